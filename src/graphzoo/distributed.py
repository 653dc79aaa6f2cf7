"""Data parallelism with PyTorch's own DistributedDataParallel, launched by ``torchrun``.

::

    torchrun --nproc-per-node 4 -m graphzoo run --config configs/chestxray14.yaml --device cuda
    torchrun --nproc-per-node 2 -m graphzoo run --data cells.npz --device cpu      # gloo, e.g. in tests

Without torchrun (no ``WORLD_SIZE`` in the environment) the world is one process and every helper
here is a no-op, so one code path serves both. Under torchrun, rank r of N:

* **trains** its share of every batch: all ranks draw the same global batch (the order comes from a
  generator seeded by (seed, epoch)) and rank r takes rows r, r+N, r+2N, ... (:func:`local_rows`);
  DDP averages the gradients, so a step sees ``batch_size`` images, as in one process;
* **embeds** a contiguous block of the images (:func:`shard`) and :func:`gather_rows` assembles the
  whole (n, d) result on every rank, so that every rank takes the same early-stopping decisions;
* runs the **graph step** only on rank 0 and receives its pseudo-labels (:func:`on_main`);
* writes **files** (checkpoints, metrics.json, predictions) only on rank 0 (:func:`is_main`); the
  others wait at a :func:`barrier` where they read them;
* keeps **quiet**: :mod:`graphzoo.progress` prints on rank 0 only.

Backend: NCCL for CUDA devices, gloo for the CPU, and gloo with a note where NCCL is unavailable.
A rank that dies stops the job: torchrun tears the others down, and a rank whose collective fails
raises :class:`PeerFailure`, naming the last checkpoint (intact: checkpoints are written atomically)
and the command that continues the run (``--resume``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys

import numpy as np
import torch
import torch.distributed as dist

from . import progress

__all__ = ["PeerFailure", "init", "resolve_device", "world_size", "rank", "is_main", "barrier", "shard",
           "local_rows", "gather_rows", "on_main", "broadcast_buffers", "wrap", "peer_guard", "set_resume_hint",
           "shutdown", "exit_now", "launched", "all_objects"]

#: Where the last checkpoint of the run in progress is, for the message of a failed peer.
_resume_hint = ""


class PeerFailure(RuntimeError):
    """Another process of the torchrun job stopped, so a collective operation failed on this one."""


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def resolve_device(name: str) -> torch.device:
    """The device this process computes on: ``auto`` picks CUDA, then MPS, then the CPU; under torchrun a
    CUDA device is ``cuda:LOCAL_RANK``. Raises ``ValueError`` for a device this machine does not have."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False; "
                             f"torch {torch.__version__}): use --device cpu (or auto), or install a CUDA build of torch")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        n = torch.cuda.device_count()
        if launched() and local >= n:
            raise ValueError(f"torchrun started more processes on this machine than it has GPUs (local rank {local}, "
                             f"{n} GPU(s)): use torchrun --nproc-per-node {n} or fewer")
        return torch.device("cuda", local if launched() else torch.cuda.current_device())
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError("--device mps, but this machine has no Apple GPU available to PyTorch: use --device cpu")
    return torch.device(name)


def init(device_name: str = "auto") -> torch.device:
    """Resolve this process's device and, under torchrun, join the process group (once).

    NCCL for CUDA devices where this build has it, else gloo (with a note when CUDA had to fall back).
    """
    device = resolve_device(device_name)
    if not launched() or dist.is_initialized():
        return device
    if not dist.is_available():
        raise RuntimeError("torchrun started several processes, but this PyTorch build has no torch.distributed; "
                           "run one process (python -m graphzoo ...) or install a build with it")
    backend = "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        if dist.is_nccl_available():
            backend = "nccl"
        elif progress.is_rank0():
            print("note: NCCL is not available in this PyTorch build; the processes communicate through gloo "
                  "(slower gradient exchange between GPUs)", file=sys.stderr, flush=True)
    dist.init_process_group(backend, device_id=device if backend == "nccl" else None,
                            timeout=datetime.timedelta(minutes=30))
    signal.signal(signal.SIGTERM, _stopped_by_torchrun)
    return device


def _stopped_by_torchrun(signum, frame) -> None:
    """torchrun sends SIGTERM to the surviving ranks when one fails (or the job is interrupted): say so,
    and how to continue, instead of dying silently under torchrun's traceback."""
    raise PeerFailure(f"rank {rank()} stops: torchrun ended the job because another process of this torchrun job "
                      "failed or the job was interrupted (torchrun's report names the rank). "
                      + (_resume_hint or "Rerun the same torchrun command with --resume to continue"))


def shutdown() -> None:
    """Leave the process group (at the end of a command under torchrun); nothing otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int) -> None:
    """End a torchrun process whose command is done: leave the process group, flush, and exit at once.

    Why not return and let Python exit: after ``destroy_process_group`` the interpreter's own teardown of a
    rank aborted now and then ("terminate called without an active exception", SIGABRT in a C++ thread's
    destructor), so torchrun reported a finished job as failed. Measured with a rank that built a Trainer and
    ran its collectives (tests/ddp_worker.py's pattern): 2 of 10 jobs aborted, and 0 of 20 with this exit;
    in one ``.ci/run`` two torchrun tests failed so. Every file a command writes is closed by then: only the
    interpreter's teardown is skipped (no atexit handlers run)."""
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def set_resume_hint(text: str) -> None:
    """What a :class:`PeerFailure` says about continuing: the run's last checkpoint and the command."""
    global _resume_hint
    _resume_hint = text


@contextlib.contextmanager
def peer_guard():
    """Turn a collective that fails because another rank died into one clear :class:`PeerFailure`."""
    try:
        yield
    except PeerFailure:
        raise
    except RuntimeError as exc:  # torch.distributed.DistError and its kin derive from it
        if world_size() == 1:
            raise
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]
        raise PeerFailure(f"rank {rank()} stops: another process of this torchrun job failed ({first}). "
                          + (_resume_hint or "Rerun the same torchrun command with --resume to continue from the "
                                             "last checkpoint")) from exc


def barrier() -> None:
    if world_size() > 1:
        with peer_guard():
            dist.barrier()


def shard(n: int) -> slice:
    """This rank's contiguous block of ``range(n)``: blocks differ in length by at most one."""
    w, r = world_size(), rank()
    return slice(r * n // w, (r + 1) * n // w)


def local_rows(batch: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch: r, r+N, ... (a batch shorter than the world: one row, repeated
    round-robin, so every rank still steps and DDP's gradient exchange matches)."""
    w = world_size()
    if w == 1 or len(batch) == 0:
        return batch
    r = rank()
    return batch[r::w] if len(batch) >= w else batch[r % len(batch):][:1]


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(part: np.ndarray) -> np.ndarray:
    """Concatenate every rank's ``part`` (rank order) on every rank: the blocks of :func:`shard` back in
    order. Parts may differ in length (padded for the exchange); dtype and trailing shape must agree."""
    if world_size() == 1:
        return part
    dev = _comm_device()
    with peer_guard():
        lengths = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(world_size())]
        dist.all_gather(lengths, torch.tensor([len(part)], device=dev))
        longest = int(max(t.item() for t in lengths))
        padded = np.zeros((longest,) + part.shape[1:], dtype=part.dtype)
        padded[: len(part)] = part
        mine = torch.from_numpy(padded).to(dev)
        parts = [torch.empty_like(mine) for _ in range(world_size())]
        dist.all_gather(parts, mine)
    return np.concatenate([p[: int(n.item())].cpu().numpy() for p, n in zip(parts, lengths)])


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0; its (picklable) result is sent to every rank."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    box = [fn(*args, **kwargs) if is_main() else None]
    with peer_guard():
        dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def all_objects(obj) -> list:
    """Every rank's (picklable) ``obj``, in rank order, on every rank: ``[obj]`` in one process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    with peer_guard():
        dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's last training step
    updated its own from its own rows, and inference must use one network."""
    if world_size() == 1:
        return
    with peer_guard():
        for b in model.buffers():
            if b.is_floating_point() or b.dtype == torch.long:
                dist.broadcast(b.data, src=0)


def wrap(module: torch.nn.Module, device: torch.device, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when the world has more than one process, else itself."""
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    with peer_guard():  # DDP broadcasts rank 0's parameters at construction: a collective
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                       find_unused_parameters=find_unused_parameters)
