#!/usr/bin/env bash
# Issue 15's GPU checks as ONE prepared script (≈ 6-8 min on one H200; every step has its own timeout).
# Run from the repository root on a GPU machine whose python3 has torch (faiss and pydicom are optional):
#
#     bash bench/device_check.sh            # log in $OUT/device_check.log (or ./device_check.log)
#     bash bench/device_check.sh 2 3        # only steps 2 and 3 (the timed ones; the log is appended to)
#
# 1. exact kNN on the GPU = the CPU's exact search (the torch top-k path; faiss's GPU index if installed)
# 2. ResNet-18 at 224 px through graphzoo's Trainer: training / extraction images/s, bf16 autocast vs float32
#    (targets: >= 1,500 training and >= 5,000 extraction images/s with mixed precision)
# 3. exact kNN 112k x 512 on the GPU (target <= 5 s)
# 4. a real run on the bundled malaria cells on the GPU: one process, then torchrun (NCCL, 1 process)
# 5. the distributed and device tests
set -o pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LOG="${OUT:-.}/device_check.log"
RUN=(--data src/graphzoo/datasets/malaria_demo.npz --label-fraction 0.2 --epochs 8 --backbone small_cnn
     --device cuda --no-progress --set split=patient "split_fractions=[0.7, 0.1, 0.2]" val_labels=budget
     image_size=32 "backbone_kwargs={width: 8}" min_epoch_steps=8 batch_size=64 rot90=true rotate_degrees=0
     crop_scale=0 translate=0 precise_bn=1024 n_neighbors=15)
STEPS=" ${*:-1 2 3 4 5} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
{
  date; echo "steps:$STEPS"; nvidia-smi -L
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"

  if want 1; then
  echo "== 1. kNN on the GPU vs the CPU's exact search"
  timeout 120 $PY - <<'EOF'
import numpy as np
from graphzoo.graph import knn_search
rng = np.random.default_rng(0)
X = rng.standard_normal((5000, 64)).astype(np.float32)
for metric in ("cosine", "euclidean"):
    d_cpu, i_cpu = knn_search(X, 20, metric=metric)
    info = {}
    d_gpu, i_gpu = knn_search(X, 20, metric=metric, device="cuda", info=info)
    same = (i_cpu == i_gpu).mean()
    print(f"{metric}: {info.get('backend')}: max |Δdist| {np.abs(d_cpu - d_gpu).max():.2e}, same index {same:.5f}")
EOF
  fi

  if want 2; then
  echo "== 2. throughput (ResNet-18, 224 px grey, batch 256)"
  timeout 240 $PY bench/gpu_bench.py --n 20000 --steps 50 --amp auto off
  fi

  if want 3; then
  echo "== 3. exact kNN 112k x 512 on the GPU"
  timeout 150 $PY bench/knn_device_bench.py --n 112000 --backends torch:cuda faiss:cuda --ref-queries 200
  fi

  if want 4; then
  echo "== 4. a run on the GPU: one process, then torchrun with NCCL"
  rm -rf /tmp/gz-device
  timeout 120 $PY -m graphzoo run "${RUN[@]}" --out /tmp/gz-device --name one
  timeout 150 $PY -m torch.distributed.run --standalone --nproc-per-node 1 -m graphzoo run "${RUN[@]}" \
      --out /tmp/gz-device --name torchrun1
  $PY -c "import json; [print(n, {k: json.load(open(f'/tmp/gz-device/{n}/metrics.json'))[k] for k in ('accuracy', 'world_size', 'wall_time_s')}) for n in ('one', 'torchrun1')]"
  fi

  if want 5; then
  echo "== 5. tests"
  timeout 240 $PY -m pytest -q -x tests/test_distributed.py tests/test_knn_device.py -p no:cacheprovider
  fi
  date
} 2>&1 | tee -a "$LOG"
