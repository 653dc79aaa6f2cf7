"""Throughput of graphzoo's own training step and feature extraction on one device (issue 15's GPU targets).

    python bench/gpu_bench.py                          # ResNet-18, 224 px grey, the best device, amp=auto
    python bench/gpu_bench.py --device cpu --size 64 --n 512 --batch-size 64 --steps 4   # a CPU smoke run

Both numbers go through :class:`graphzoo.train.Trainer`, as a run does: uint8 batches (pinned memory on
CUDA), normalisation, channels-last, autocast (``--amp``: auto = bf16 on a GPU that has it), Adam, the
NaN check. Training: ``--steps`` steps of ``--batch-size`` random images after ``--warmup`` steps;
extraction: :meth:`Trainer.infer` over ``--n`` images (logits and ψ back on the host, as a run needs
them). Targets on one H200-class GPU with mixed precision: training ≥ 1,500 images/s, extraction
≥ 5,000 images/s. Prints one table row per (amp) setting.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from graphzoo.config import RunConfig
from graphzoo.data.types import ImageSet
from graphzoo.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args, amp: str, tmp: str) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, args.size, args.size), dtype=np.uint8)
    ds = ImageSet(images, np.arange(args.n) % 2, ["a", "b"])
    cfg = RunConfig(data="bench", out=tmp, name=f"amp-{amp}", backbone=args.backbone, image_size=args.size,
                    batch_size=args.batch_size, label_fraction=1.0, split="random", augment=False,
                    device=args.device, amp=amp, progress=False, val_labels="all", threads=args.threads)
    tr = Trainer(cfg, imageset=ds)
    tr.setup()
    idx = torch.as_tensor(tr.idx_train)
    g = torch.Generator().manual_seed(0)
    targets = torch.as_tensor(tr.data.targets)

    def steps(k: int) -> None:
        for s in range(k):
            b = idx[torch.randint(len(idx), (args.batch_size,), generator=g)]
            loss = tr.loss(tr.forward(tr.batch(b, None)), targets[b].to(tr.device)).mean()
            tr.optimizer_step(loss, s)

    steps(args.warmup)
    _sync(tr.device)
    t0 = time.perf_counter()
    steps(args.steps)
    _sync(tr.device)
    train_s = time.perf_counter() - t0
    tr.infer(np.arange(min(args.n, 4 * args.batch_size)), batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    _, Z = tr.infer(np.arange(args.n), batch_size=args.infer_batch_size)
    infer_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(tr.device) / 2**30 if tr.device.type == "cuda" else float("nan")
    return {"device": str(tr.device), "amp": str(tr.amp_dtype).replace("torch.", "") if tr.amp_dtype else "float32",
            "train_img_s": args.steps * args.batch_size / train_s, "infer_img_s": args.n / infer_s,
            "feature_dim": Z.shape[1], "gpu_peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=20000, help="images extracted (and drawn from for training)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--infer-batch-size", type=int, default=512, help="capped at 8 Mpx a batch by Trainer.infer")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", nargs="+", default=["auto", "off"])
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    print(f"{args.backbone}, {args.size}² grey, batch {args.batch_size}, {args.steps} timed steps, {args.n} extracted")
    print("| device | precision | training images/s | extraction images/s | ψ dim | GPU peak GiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for amp in args.amp:
            r = measure(args, amp, tmp)
            print(f"| {r['device']} | {r['amp']} | {r['train_img_s']:,.0f} | {r['infer_img_s']:,.0f} | "
                  f"{r['feature_dim']} | {r['gpu_peak_gib']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
