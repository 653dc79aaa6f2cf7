"""Exact kNN search on an accelerator: faiss's GPU flat index, or a blocked matrix-multiply top-k in torch.

:func:`graphzoo.graph.knn_search` comes here only when it is asked for a device (``device="cuda"``,
``"cuda:1"``, ``"mps"``, ``"auto"``) or for ``backend="torch"``; this module imports torch inside
its functions, so importing it (and the graph core) stays torch-free.

Which engine runs (:func:`plan_device`):

* ``faiss`` on ``cuda:N`` where the installed faiss has GPU support
  (``faiss.StandardGpuResources`` exists and ``faiss.get_num_gpus() > N``);
* else ``torch`` on the device: for each block of ``b`` queries, the similarities ``S = Q_b Xᵀ``
  (``b × n`` float32, ``b`` chosen so that ``S`` stays near 256 MB) and ``torch.topk`` of each row.
  Cosine ranks by the inner product of L2-normalised rows (normalised by the caller); euclidean
  ranks by ``2 q·x - ‖x‖²``, which is ``‖q‖² - ‖q - x‖²`` (the same expansion as the numpy path), and
  gives ``‖q - x‖² = ‖q‖² - (2 q·x - ‖x‖²)`` at the end.

Both return what the CPU paths return: ``(score, idx)`` best first, ``score`` the similarity
(cosine) or the squared distance (euclidean). Matrix products run in full float32 (no TF32) even
when the caller's training loop allowed TF32, so that the neighbours are the CPU's up to ties.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np

__all__ = ["plan_device", "torch_search", "faiss_gpu_search"]

# Queries per block are chosen so that one block of similarities (block × n float32) stays near this.
_BLOCK_BYTES = 256 * 2**20
# faiss's GPU k-selection handles k up to 2048 (1024 in older builds); beyond it torch runs instead.
_FAISS_GPU_MAX_K = 1024
_DEVICE_FORM = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _faiss_gpus(faiss) -> int:
    """Number of GPUs the installed faiss can use (0 for a CPU-only build or no faiss)."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def _torch_or_none():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is installed wherever the deep modules run
        return None
    return torch


def _torch_device(device: str) -> str:
    """``device`` ("cuda", "cuda:N", "mps", "cpu") checked against what torch sees, as "cuda:N" / "mps" / "cpu"."""
    torch = _torch_or_none()
    if torch is None:
        raise ValueError(f"device={device!r} needs PyTorch for the kNN search (pip install torch), "
                         "or a faiss build with GPU support; or use device='cpu'")
    if device == "cpu":
        return "cpu"
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device='mps' but PyTorch sees no Apple GPU (torch.backends.mps.is_available() is False); "
                             "use device='cpu', or device='auto' to take a GPU only where there is one")
        return "mps"
    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available():
        build = " (this PyTorch build has no CUDA)" if torch.version.cuda is None else ""
        raise ValueError(f"device={device!r} but PyTorch sees no CUDA GPU{build}; use device='cpu', or "
                         "device='auto' to take a GPU only where there is one, or run on a machine with a GPU")
    if index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but PyTorch sees only {torch.cuda.device_count()} CUDA GPU(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); pick one of those")
    return f"cuda:{index}"


def _auto_device() -> str | None:
    """The first GPU torch sees ("cuda:0", else "mps"), or None for none (or no torch)."""
    torch = _torch_or_none()
    if torch is not None and torch.cuda.is_available():
        return "cuda:0"
    if torch is not None and torch.backends.mps.is_available():
        return "mps"
    return None


def plan_device(backend: str, method: str, device, k_search: int, faiss) -> tuple[str, str] | None:
    """Choose ``(engine, device)`` for a search asked to run on ``device`` (or with ``backend="torch"``).

    engine is "faiss" (GPU index) or "torch"; device is "cuda:N", "mps" or "cpu". Returns None
    where the CPU engines of :func:`graphzoo.graph.knn_search` should run (``device="auto"``
    without a GPU). Raises ``ValueError`` naming the problem and the fix for a device that is
    not there or an engine that cannot run on it.
    """
    device = "cpu" if device is None else str(device)
    if not _DEVICE_FORM.match(device):
        raise ValueError(f"device={device!r} is not one of None, 'cpu', 'auto', 'cuda', 'cuda:N', 'mps'")
    if device != "cpu" and backend == "numpy":
        raise ValueError(f"backend='numpy' runs on the CPU only, but device={device!r}; "
                         "use backend='auto' (faiss's GPU index, else torch) or backend='torch' on a device")
    if method == "approximate":
        if backend == "torch" or device not in ("cpu", "auto"):
            raise ValueError("method='approximate' (faiss HNSW) runs on the CPU only; on a GPU use "
                             "method='exact', which is fast there, or device='cpu'")
        return None  # the CPU's HNSW index
    gpus = _faiss_gpus(faiss)
    want_faiss = backend in ("auto", "faiss") and k_search <= _FAISS_GPU_MAX_K
    if device == "auto":
        if want_faiss and gpus:
            return "faiss", "cuda:0"
        found = _auto_device() if backend != "faiss" else None
        if found is not None:
            return "torch", found
        return ("torch", "cpu") if backend == "torch" else None
    if device.startswith("cuda") and want_faiss and int(device.partition(":")[2] or 0) < gpus:
        return "faiss", f"cuda:{int(device.partition(':')[2] or 0)}"
    if backend == "faiss" and device != "cpu":
        raise ValueError(f"backend='faiss' with device={device!r} needs a faiss build with GPU support that sees "
                         f"that GPU (this faiss sees {gpus}); install faiss-gpu, or use backend='auto' or "
                         "'torch' for the torch top-k on the device")
    if device == "cpu" and backend != "torch":
        return None
    return "torch", _torch_device(device)


@contextmanager
def _full_fp32_matmul(torch):
    """Run float32 matrix products in full precision (TF32 off), restoring the caller's setting after.

    A training loop may have allowed TF32 (10-bit mantissa) for speed; distances computed that way
    reorder near neighbours. torch refuses to mix its legacy global setting with the newer
    per-backend one, so the one the caller used is the one changed here.
    """
    try:
        before = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller set the per-backend (new) API
        before = torch.backends.cuda.matmul.fp32_precision
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision = before
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _ties_by_index(val, ind):
    """Order each row by value (larger first) and equal values by index, as a stable sort would."""
    perm = ind.argsort(dim=1)
    val, ind = val.gather(1, perm), ind.gather(1, perm)
    order = val.argsort(dim=1, descending=True, stable=True)
    return val.gather(1, order), ind.gather(1, order)


def _tensor(torch, a: np.ndarray, dev):
    """``a`` on ``dev``, sharing memory on the CPU (read-only arrays, e.g. a memory map, are copied:
    torch warns on wrapping them)."""
    return torch.from_numpy(a if a.flags.writeable else a.copy()).to(dev)


def torch_search(base: np.ndarray, queries: np.ndarray, k: int, inner_product: bool, device: str,
                 exclude_self: bool, block_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query among ``base`` by blocked products on ``device``; (score, idx) best first.

    base : (n, d) float32; queries : (m, d) float32 (``queries is base`` for a self-search).
    With ``exclude_self`` (a self-search), query ``i``'s own entry ``S[i, i]`` is set to -inf
    before the top-k, so each point is excluded even among exact duplicates (its twin stays).
    Returns score (m, k) float32 (similarity, or squared distance for euclidean) and idx (m, k) int64.
    """
    import torch

    dev = torch.device(device)
    with torch.no_grad(), _full_fp32_matmul(torch):
        B = _tensor(torch, base, dev)
        Q = B if queries is base else _tensor(torch, queries, dev)
        n, m = B.shape[0], Q.shape[0]
        block = max(1, (block_bytes or _BLOCK_BYTES) // (4 * n))
        b_sq = None if inner_product else (B * B).sum(1)
        out_val = torch.empty((m, k), dtype=torch.float32, device=dev)
        out_idx = torch.empty((m, k), dtype=torch.int64, device=dev)
        for start in range(0, m, block):
            S = Q[start : start + block] @ B.T  # (block, n)
            if not inner_product:
                S.mul_(2).sub_(b_sq)  # 2 q·x - ‖x‖²: larger is nearer
            if exclude_self:
                S.diagonal(offset=start).fill_(float("-inf"))  # entries (i, start + i)
            val, ind = _ties_by_index(*torch.topk(S, k, dim=1))
            out_val[start : start + len(S)] = val
            out_idx[start : start + len(S)] = ind
            del S
        if not inner_product:  # ‖q - x‖² = ‖q‖² - (2 q·x - ‖x‖²)
            q_sq = b_sq if queries is base else (Q * Q).sum(1)
            out_val = (q_sq[:, None] - out_val).clamp_min_(0)
        return out_val.cpu().numpy(), out_idx.cpu().numpy()


def faiss_gpu_search(faiss, base: np.ndarray, queries: np.ndarray, k: int, inner_product: bool,
                     device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by faiss's GPU flat index on ``device`` ("cuda:N"); (score, idx) as :func:`torch_search`.

    A self-search asks for ``k + 1`` and the caller drops each point's own index, as for the CPU flat index.
    """
    res = faiss.StandardGpuResources()
    config = faiss.GpuIndexFlatConfig()
    config.device = int(device.partition(":")[2] or 0)
    config.useFloat16 = False
    index = (faiss.GpuIndexFlatIP if inner_product else faiss.GpuIndexFlatL2)(res, base.shape[1], config)
    index.add(base)
    scores, idx = index.search(queries, k)
    if not inner_product:
        scores = np.maximum(scores, 0)
    return scores.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)
