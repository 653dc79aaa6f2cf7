"""The front door for data, :func:`load`, its format registry and the format detection.

``load(path)`` looks at ``path`` and picks a reader from :data:`READERS` (or takes the one named
by ``format=``); every reader returns an :class:`~graphzoo.data.types.ImageSet`. This module holds
the registry, the format detection and the helpers the readers share; each reader lives in its
own module and registers itself, with its own format test, through :func:`register_reader` on
import (``graphzoo.data`` imports them all):

* :mod:`~graphzoo.data.folder`: ``folder``, one folder per class (``Parasitized/``,
  ``Uninfected/``), optionally below split folders (``train/``, ``valid/``, ``val/``, ``test/``);
* :mod:`~graphzoo.data.npz`: ``npz`` (our array layout) and ``medmnist`` (the MedMNIST keys);
* :mod:`~graphzoo.data.chestxray14`, :mod:`~graphzoo.data.cbis_ddsm`, :mod:`~graphzoo.data.mias`:
  one dataset each.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import zipfile
from pathlib import Path
from typing import Callable

from ..registry import Registry
from ._images import IMAGE_SUFFIXES
from .types import DecodeOptions, ImageSet

__all__ = ["READERS", "load", "detect_format", "register_reader", "takes_decode_options", "check_reader_options",
           "SPLIT_NAMES"]

READERS: Registry[Callable[..., ImageSet]] = Registry("data format")

# Folder names that mean "a split of the data", not a class.
SPLIT_NAMES = frozenset({"train", "training", "valid", "validation", "val", "test", "testing"})

# The advice of an undetectable format; ``graphzoo data inspect`` swaps in its flag.
FORMAT_HINT = "pass format= one of"


def load(path: str | os.PathLike, format: str | None = None, *, skip_corrupt: bool = False, **options) -> ImageSet:
    """Read a dataset from disk in any supported format.

    Parameters
    ----------
    path : path-like or str
        A folder or file. ``"FORMAT:PATH"`` (e.g. ``"folder:/data/cells"``) names the format
        inline, for places that only take one string.
    format : str, optional
        One of ``READERS.names()`` (``cbis_ddsm``, ``chestxray14``, ``folder``, ``medmnist``,
        ``mias``, ``npz``). Default: detected from ``path`` (see :func:`detect_format`).
    skip_corrupt : bool
        False (default): an image that cannot be decoded is an error that names it. True: such
        images are skipped, with one warning at the end giving their count.
    **options
        Passed to the reader; each reader's docstring lists its options. Image-file readers share
        ``channels`` (None | 1 | 3), ``size`` (resize on read), ``stack`` (None: array when sizes
        agree, else list; True: array or error; False: list), ``workers``, ``cache`` and
        ``cache_dir``, the fields of :class:`~graphzoo.data.types.DecodeOptions`, also given as one
        ``decode=DecodeOptions(...)``.

    Returns
    -------
    ImageSet
        ``images`` uint8 (N, H, W[, C]) (or a list when sizes differ), ``labels`` int64 (N,),
        ``class_names``, and whatever the source has of ``split``, ``patient_ids``,
        ``filenames``, ``multilabels``, ``meta``; ``notes`` lists what was worked around.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The format cannot be detected or is unknown, an option is unknown, the set holds no
        images, or the data is bad (the message names the file and the fix).

    Examples
    --------
    >>> ds = load("malaria/malaria_50_gray.npz")                         # doctest: +SKIP
    >>> ds.images.shape, ds.class_names                                 # doctest: +SKIP
    ((27558, 50, 50), ['Uninfected', 'Parasitized'])
    """
    text = os.fspath(path)
    if format is None and ":" in text:
        prefix, rest = text.split(":", 1)
        if prefix in READERS:  # a one-letter Windows drive is never a format name
            format, text = prefix, rest
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist (resolved from {Path.cwd()}). Fix: check the path (relative paths start "
            "at the current folder)."
        )
    if format is None:
        format, path = _detect(path)
    reader = READERS.get(format)
    check_reader_options(format, options)
    if isinstance(options.get("decode"), DecodeOptions):  # skip_corrupt=True in either place skips
        skip_corrupt = skip_corrupt or options["decode"].skip_corrupt
    ds = reader(path, skip_corrupt=skip_corrupt, **options)
    if len(ds) == 0:
        raise ValueError(
            f"{path} holds no images (read as {format!r}). Fix: point at a dataset with at least one labelled "
            "image, or pass format= if it was read as the wrong format."
        )
    return ds


def reader_option_names(format: str) -> list[str]:
    """The options the reader of ``format`` takes (its keyword-only parameters, but ``skip_corrupt``)."""
    params = inspect.signature(READERS.get(format)).parameters
    return [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k != "skip_corrupt"]


def check_reader_options(format: str, options) -> None:
    """Raise ``ValueError`` naming the options (keys of ``options``) that the reader of ``format`` does not
    take, and listing those it does; an unknown ``format`` raises with "did you mean"."""
    params = inspect.signature(READERS.get(format)).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        raise ValueError(
            f"format {format!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(reader_option_names(format))}."
        )


# --------------------------------------------------------------------------------------------
# Format detection: each reader brings its own test
# --------------------------------------------------------------------------------------------


def register_reader(name: str, *, detect: Callable[[Path], bool], priority: int):
    """Decorator: register a reader in :data:`READERS` together with its format test.

    Parameters
    ----------
    name : str
        The format name (``load(path, format=name)``).
    detect : callable (Path) -> bool
        True when ``path`` (a file, or a folder) is in this format. It must look at names (and at
        most an archive's key list or a small array), never decode an image.
    priority : int
        :func:`detect_format` asks the readers in increasing ``priority`` (then name), and the
        first that answers True wins: specific layouts (a named CSV, ``Info.txt``) come before
        generic ones (any ``.npz``, any folder of images).

    Adding a format is one new module that defines its reader with this decorator, plus its name
    in the imports of :mod:`graphzoo.data`.
    """

    def decorator(reader: Callable[..., ImageSet]) -> Callable[..., ImageSet]:
        reader.detect = detect  # type: ignore[attr-defined]
        reader.priority = priority  # type: ignore[attr-defined]
        return READERS.register(name)(reader)

    return decorator


def npz_keys(path: Path) -> list[str]:
    """The array names in an ``.npz`` (read from the zip directory, nothing is loaded)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz archive ({exc}). Fix: re-create or re-download it.") from None


def top_files(path: Path) -> list[Path]:
    """The visible files directly in the folder ``path`` (``[path]`` when it is a file)."""
    if path.is_file():
        return [path]
    return [p for p in path.iterdir() if not p.name.startswith(".") and p.is_file()]


def _has_images_below(path: Path, max_depth: int = 4) -> bool:
    for root, dirs, files in os.walk(path):
        if len(Path(root).relative_to(path).parts) >= max_depth:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            return True
    return False


def _lone_npz(path: Path) -> Path | None:
    """The one ``.npz`` of a folder that holds no images (a folder that is just a wrapper around it)."""
    npz = [p for p in top_files(path) if p.suffix.lower() == ".npz"]
    if len(npz) == 1 and not _has_images_below(path):
        return npz[0]
    return None


def _detect(path: Path) -> tuple[str, Path]:
    """(format, the path to read): a folder that only wraps one ``.npz`` is read as that file."""
    names = ", ".join(READERS.names())
    readers = sorted(READERS.names(), key=lambda n: (READERS.get(n).priority, n))
    for name in readers:
        if READERS.get(name).detect(path):
            return name, path
    if path.is_dir():
        lone = _lone_npz(path)
        if lone is not None:
            return _detect(lone)
        raise ValueError(
            f"cannot tell the format of {path}: no images, npz or known CSV/Info.txt found. "
            f"Fix: {FORMAT_HINT} {names}, or point at the folder that holds the class folders."
        )
    raise ValueError(f"cannot tell the format of the file {path}. Fix: {FORMAT_HINT} {names}.")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of ``path`` from names only (no image is decoded).

    Each reader in :data:`READERS` carries a ``detect(path) -> bool`` and a ``priority``; the
    readers are asked in increasing priority and the first to say yes wins:

    ============= ======== =========================================================================
    ``chestxray14``  10    a ``Data_Entry_2017*.csv[.gz]`` (the file, or at the folder's top level)
    ``cbis_ddsm``    20    a ``*case_description*.csv`` (the file, or at the folder's top level)
    ``mias``         30    ``Info.txt`` (with ``.pgm`` files, at the top level or one folder down),
                           or our npz of mini-MIAS (``mdbNNN`` file names, no ``patient_ids``)
    ``medmnist``     40    an ``.npz`` with ``train_images``
    ``npz``          50    any other ``.npz``
    ``folder``       90    a folder with image files below it (4 levels deep at most)
    ============= ======== =========================================================================

    A folder that no reader claims but that holds exactly one ``.npz`` and no images is
    detected as that file.

    Raises
    ------
    ValueError
        Nothing recognisable; the message lists the formats so ``format=`` can be given.
    """
    return _detect(Path(path))[0]


DECODE_KEYWORDS = tuple(f.name for f in dataclasses.fields(DecodeOptions))


def takes_decode_options(*names: str):
    """Decorator: a reader that takes one ``decode: DecodeOptions`` is called with the shared keywords.

    The decorated reader is written ``reader(path, *, decode: DecodeOptions, <its own options>)``; its callers
    pass either ``decode=DecodeOptions(...)`` or the keywords ``names`` (default: every field of
    :class:`~graphzoo.data.types.DecodeOptions`) one by one, as :func:`load` documents them, or both (a
    keyword then replaces that field of ``decode``). The wrapper's signature lists those keywords, so that
    :func:`load`'s check of unknown options and its message see them like any other option.
    """
    names = names or DECODE_KEYWORDS
    unknown = set(names) - set(DECODE_KEYWORDS)
    if unknown:
        raise TypeError(f"takes_decode_options: {sorted(unknown)} are not DecodeOptions fields {DECODE_KEYWORDS}")
    defaults = DecodeOptions()
    kw = inspect.Parameter.KEYWORD_ONLY
    shared = {f.name: inspect.Parameter(f.name, kw, default=f.default, annotation=f.type)
              for f in dataclasses.fields(DecodeOptions) if f.name in names}
    decode_param = inspect.Parameter("decode", kw, default=None, annotation="DecodeOptions | None")

    def decorator(reader: Callable[..., ImageSet]) -> Callable[..., ImageSet]:
        @functools.wraps(reader)
        def wrapper(*args, decode: DecodeOptions | None = None, **kwargs) -> ImageSet:
            if decode is not None and not isinstance(decode, DecodeOptions):
                raise ValueError(f"decode must be a graphzoo.data.DecodeOptions, got {type(decode).__name__}. Fix: "
                                 f"give its fields as options of their own ({', '.join(names)}).")
            given = {k: kwargs.pop(k) for k in names if k in kwargs}
            opts = decode if decode is not None else defaults
            return reader(*args, decode=dataclasses.replace(opts, **given) if given else opts, **kwargs)

        sig = inspect.signature(reader)
        own = [p for p in sig.parameters.values() if p.name != "decode"]
        # Positional parameters, skip_corrupt (load passes it to every reader), the reader's own options, the
        # other shared keywords, decode.
        order = ([p for p in own if p.kind != kw] + [shared[k] for k in ("skip_corrupt",) if k in shared]
                 + [p for p in own if p.kind == kw] + [p for k, p in shared.items() if k != "skip_corrupt"])
        wrapper.__signature__ = sig.replace(parameters=order + [decode_param])  # type: ignore[attr-defined]
        return wrapper

    return decorator
