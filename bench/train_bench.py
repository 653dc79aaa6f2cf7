"""Training-loop overhead: our supervised epoch vs a bare torch loop on the same model and batch.

    python bench/train_bench.py [--backbone small_cnn] [--size 50] [--n 4096] [--batch-size 128] [--threads 1]

Both loops train the same architecture from the same initial weights on the same number of
random uint8 images for the same number of steps. The bare loop indexes a pre-normalised float
tensor and does forward / backward / Adam step, nothing else; ours (``graphzoo.train.one_pass.supervised_epoch``)
cuts uint8 batches, normalises, checks the loss for NaN, updates progress, and (second row)
augments. Prints images/s and the ratio (target: >= 0.9 without augmentation). The machine is
shared, so each loop is timed ``--repeats`` times, interleaved, and the best time is kept.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from graphzoo.config import RunConfig
from graphzoo.data.types import ImageSet
from graphzoo.train import Trainer
from graphzoo.train.one_pass import supervised_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="small_cnn")
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--n", type=int, default=4096, help="training images (all labelled)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    n_all = int(args.n / 0.7) + 1
    images = rng.integers(0, 256, (n_all, args.size, args.size), dtype=np.uint8)
    labels = np.arange(n_all) % 2
    ds = ImageSet(images, labels, ["a", "b"])
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for augment in (False, True):
            cfg = RunConfig(data="bench", out=tmp, name=f"aug{augment}", backbone=args.backbone,
                            batch_size=args.batch_size, label_fraction=1.0, split="random", augment=augment,
                            threads=args.threads, progress=False, min_epoch_steps=1, val_labels="all")
            exp = Trainer(cfg, imageset=ds)
            exp.setup()
            results[augment] = exp
        exp = results[False]
        n_lab = len(exp.idx_lab)
        steps = -(-n_lab // args.batch_size)
        init = {k: v.clone() for k, v in exp.model.state_dict().items()}

        # bare loop: pre-normalised float tensor, a copy of the same model with the same weights
        model = copy.deepcopy(exp.model)
        xs = exp.normalizer(exp.data.images[torch.as_tensor(exp.idx_lab)])
        ys = torch.as_tensor(exp.data.targets[exp.idx_lab])

        def bare():
            model.load_state_dict(init)
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            perm = torch.randperm(len(xs))
            t = time.perf_counter()
            for b in perm.split(args.batch_size):
                loss = F.cross_entropy(model(xs[b]), ys[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return time.perf_counter() - t

        def ours(e):
            e.model.load_state_dict(init)
            e.optimizer = torch.optim.Adam(e.model.parameters(), lr=1e-3)
            t = time.perf_counter()
            supervised_epoch(e)
            return time.perf_counter() - t

        times = {"bare": [], "ours": [], "ours+augment": []}
        for _ in range(args.repeats):
            times["bare"].append(bare())
            times["ours"].append(ours(results[False]))
            times["ours+augment"].append(ours(results[True]))
    best = {k: min(v) for k, v in times.items()}
    print(f"backbone={args.backbone} size={args.size} batch={args.batch_size} images/epoch={n_lab} steps={steps} "
          f"threads={args.threads}")
    print(f"{'loop':<14}{'best s':>9}{'images/s':>11}{'vs bare':>9}")
    for k, v in best.items():
        print(f"{k:<14}{v:>9.2f}{n_lab / v:>11.0f}{best['bare'] / v:>9.2f}")


if __name__ == "__main__":
    main()
