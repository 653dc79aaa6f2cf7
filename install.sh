#!/usr/bin/env bash
# Create .venv and install GraphNet Zoo with its deep-learning, DICOM, plotting and test extras.
# Usage: ./install.sh            (then: .venv/bin/graphzoo --help)
set -euo pipefail
cd "$(dirname "$0")"
# PyTorch's CUDA build, which pip takes by default, makes a ~6 GB environment; pip's own error on a full disk
# ("OSError: [Errno 28] No space left on device") names neither the cause nor the fix.
free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 8 ]; then
  echo "install.sh: only ${free_gb} GB free here; the environment with PyTorch's CUDA build needs about 7 GB." >&2
  echo "  Free some space, or install the CPU build (README.md, 'CPU-only machines'). Trying anyway." >&2
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Extra pip arguments (e.g. exact torch/torchvision pins for a given machine) may be passed in.
if [ "$#" -gt 0 ]; then .venv/bin/python -m pip install -q "$@"; fi
.venv/bin/python -m pip install -q -e ".[all,test]"
echo "installed: $(.venv/bin/python -c 'import graphzoo, torch, torchvision; print("graphzoo", graphzoo.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)')"
