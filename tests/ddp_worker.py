"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, CPU): the pieces of
:mod:`graphzoo.distributed` in a real two-process group. Rank 0 writes what the test compares with
one process into ``OUT/rank0.npz``.

    torchrun --nproc-per-node 2 tests/ddp_worker.py OUT DATA
"""

import sys
from pathlib import Path

import numpy as np
import torch

from graphzoo import distributed
from graphzoo.config import RunConfig
from graphzoo.train.trainer import Trainer


def toy_ddp_steps(n_steps: int = 3) -> torch.Tensor:
    """A linear classifier trained by DDP on each rank's rows of a fixed batch of 8: its final weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)
    ddp = distributed.wrap(model, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rows = distributed.local_rows(torch.arange(8))
    for _ in range(n_steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(X[rows]), y[rows]).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main(out: Path, data: str) -> None:
    distributed.init("cpu")
    r, w = distributed.rank(), distributed.world_size()
    assert w == 2, w
    # gather_rows: parts of unequal length come back in rank order on every rank
    part = np.arange(r * 10, r * 10 + 3 + r, dtype=np.float32).reshape(-1, 1) * np.ones((1, 4), np.float32)
    gathered = distributed.gather_rows(part)
    # local_rows: the ranks' rows of a batch of 7 partition it
    rows = distributed.all_objects(distributed.local_rows(torch.arange(7)).tolist())
    # on_main: every rank receives rank 0's value
    value = distributed.on_main(lambda: {"rank_that_ran": distributed.rank()})
    weights = distributed.all_objects(toy_ddp_steps())
    # Trainer.infer: each rank embeds its block of the images, every rank gets all of them
    cfg = RunConfig(data=data, backbone="small_cnn", backbone_kwargs={"width": 8}, image_size=32, threads=1,
                    device="cpu", progress=False, out=str(out / "runs"), name="infer", label_fraction=0.2)
    trainer = Trainer(cfg)
    trainer.setup()
    logits, Z = trainer.infer(np.arange(256), batch_size=64)
    if r == 0:
        np.savez(out / "rank0.npz", gathered=gathered, rows0=np.array(rows[0]), rows1=np.array(rows[1]),
                 value=value["rank_that_ran"], weights0=weights[0].numpy(), weights1=weights[1].numpy(), logits=logits, Z=Z)
    distributed.barrier()
    distributed.exit_now(0)  # as graphzoo's command line ends a torchrun rank


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
