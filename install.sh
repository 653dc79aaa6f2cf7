#!/usr/bin/env bash
# Create .venv and install GraphNet Zoo with its deep-learning, DICOM, plotting and test extras.
# Usage: ./install.sh            (then: .venv/bin/graphzoo --help)
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Extra pip arguments (e.g. exact torch/torchvision pins for a given machine) may be passed in.
if [ "$#" -gt 0 ]; then .venv/bin/python -m pip install -q "$@"; fi
.venv/bin/python -m pip install -q -e ".[all,test]"
echo "installed: $(.venv/bin/python -c 'import graphzoo, torch, torchvision; print("graphzoo", graphzoo.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)')"
