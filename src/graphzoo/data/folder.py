"""The ``folder`` reader: one folder per class, optionally below split and wrapper folders.

Layouts such as Malaria's ``cell_images/{train,valid}/{Parasitized,Uninfected}`` or ChestX-ray14's
``NIH1000/{train,valid,test}/{0_normal,1_abnormal}``: every folder that directly holds images is a
class, and its parent's name is the split when it is one of
:data:`~graphzoo.data.readers.SPLIT_NAMES`. A folder named ``unlabelled`` (option ``unlabelled_dirs``) holds
images of no class: they are read with label -1. Registered in :data:`~graphzoo.data.readers.READERS`
on import, detected (priority 90, the last resort) by any image file at most 4 folders down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import IMAGE_SUFFIXES, decode_many, finish_images, note
from .readers import SPLIT_NAMES, _has_images_below, register_reader, takes_decode_options
from .types import DecodeOptions, ImageSet

__all__ = ["read_folder"]


def _scan_class_folders(root: Path, notes: list[str]) -> list[tuple[Path, str, str | None]]:
    """Walk ``root``; return (file, class, split) for every image in a class folder.

    A class folder is a folder that directly holds images; its name is the class, and its parent's
    name is the split when that is one of :data:`SPLIT_NAMES`. Hidden files and folders are
    skipped silently, other non-image files with one note per folder.
    """
    items: list[tuple[Path, str, str | None]] = []
    holders: dict[Path, int] = {}  # folder -> number of images directly in it
    ignored: dict[Path, list[str]] = {}
    all_dirs: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        d = Path(dirpath)
        all_dirs.append(d)
        count = 0
        for f in sorted(files):
            if f.startswith("."):
                continue
            suffix = Path(f).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                count += 1
                if d == root:
                    continue
                parent = d.parent.name.lower()
                split = parent if parent in SPLIT_NAMES else None
                items.append((d / f, d.name, split))
            else:
                ignored.setdefault(d, []).append(f)
        holders[d] = count

    if holders.get(root, 0) and not items:
        raise ValueError(
            f"{root} holds images directly but no class folders. Fix: put each class's images in "
            f"its own subfolder ({root}/<class>/...), or use a format with a label file."
        )
    if holders.get(root, 0):
        note(notes, f"{root}: {holders[root]} image files at the top level are not in a class folder and were ignored")
    # An "empty class folder" is a folder with no images below it, next to folders that are
    # class folders (so that a stray empty folder elsewhere does not stop the load).
    has_below: dict[Path, bool] = {}
    for d in sorted(all_dirs, key=lambda p: -len(p.parts)):
        has_below[d] = holders.get(d, 0) > 0 or any(
            has_below.get(c, False) for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")
        )
    for d in all_dirs:
        if d == root or has_below[d]:
            continue
        siblings = [s for s in d.parent.iterdir() if s.is_dir() and s != d and not s.name.startswith(".")]
        if any(holders.get(s, 0) > 0 for s in siblings):
            held = f"; it holds {', '.join(ignored[d][:3])}" if d in ignored else ""
            raise ValueError(
                f"class folder {d} is empty (no image files{held}). "
                "Fix: add its images, or remove the folder if that class is not wanted."
            )
    for d, fs in ignored.items():
        if holders.get(d, 0) > 0:
            shown = ", ".join(fs[:3]) + (", ..." if len(fs) > 3 else "")
            note(notes, f"{d}: ignored {len(fs)} non-image file(s) ({shown})")
    return items


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and _has_images_below(path)


@register_reader("folder", detect=_is_image_folder, priority=90)
@takes_decode_options()
def read_folder(
    path: Path,
    *,
    decode: DecodeOptions,
    class_names: Sequence[str] | None = None,
    unlabelled_dirs: Sequence[str] = ("unlabelled",),
) -> ImageSet:
    """Class-per-folder images (png, jpg, tif, bmp, pgm, dcm).

    Every folder that directly holds images is a class folder named by its folder; classes of the
    same name under different split folders are one class. The split of an image is its class
    folder's parent name when that is ``train``, ``training``, ``valid``, ``validation``, ``val``,
    ``test`` or ``testing`` (lower-cased, otherwise as written), else ``None`` for the whole set.

    Parameters
    ----------
    class_names : sequence of str, optional
        Class order (label i is ``class_names[i]``). Default: sorted folder names, as torchvision's
        ``ImageFolder``. Folders not listed are left out, with a note; a listed name with no
        folder is an error.
    decode : DecodeOptions
        ``skip_corrupt``, ``channels``, ``size``, ``stack``, ``workers``, ``cache``, ``cache_dir``, given as
        keywords or as one object (see :func:`~graphzoo.data.load`).
    unlabelled_dirs : sequence of str
        Folder names (compared case-insensitively) whose images belong to no class: they are read
        with label -1 (unlabelled: they join the graph, never the evaluation). Default
        ``("unlabelled",)``; ``()`` reads such a folder as a class.

    Returns
    -------
    ImageSet
        ``filenames`` are paths relative to ``path``; ``split`` is set when split folders exist.
    """
    notes: list[str] = []
    items = _scan_class_folders(path, notes)
    if not items:
        raise ValueError(
            f"no images found below {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Fix: point at the folder that holds one subfolder per class."
        )
    free = {str(u).lower() for u in unlabelled_dirs}
    found = sorted({c for _, c, _ in items if c.lower() not in free})
    if not found:
        raise ValueError(f"{path} holds only unlabelled images ({', '.join(sorted(free))}/); a classifier needs "
                         "class folders too. Fix: put some labelled images in one folder per class.")
    if class_names is None:
        class_names = found
    else:
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if c not in found]
        if missing:
            raise ValueError(
                f"class_names lists {missing} but {path} has no such class folder (found: {found}). "
                "Fix: correct class_names or add the folders."
            )
        dropped = [c for c in found if c not in class_names]
        if dropped:
            note(notes, f"{path}: class folders {dropped} are not in class_names and were left out")
            items = [it for it in items if it[1] in class_names or it[1].lower() in free]
    index = {c: i for i, c in enumerate(class_names)}
    files = [p for p, _, _ in items]
    images, ok = decode_many(files, notes=notes, desc=f"decoding {path.name}", **decode.decode_kwargs())
    items = [it for it, k in zip(items, ok) if k]
    rel = np.array([str(p.relative_to(path)) for p, _, _ in items])
    labels = np.array([-1 if c.lower() in free else index[c] for _, c, _ in items], dtype=np.int64)
    splits = [s for _, _, s in items]
    split = None
    if any(s is not None for s in splits):
        split = np.array([s if s is not None else "" for s in splits])
        blank = (split == "") & (labels >= 0)  # unlabelled images always train: no split needed
        if blank.any():
            note(notes, f"{path}: {int(blank.sum())} images are not under a split folder; their split is ''")
    return ImageSet(
        images=finish_images(images, stack=decode.stack, where=str(path), names=rel, notes=notes),
        labels=labels,
        class_names=list(class_names),
        split=split,
        filenames=rel,
        source=f"folder:{path}",
        notes=notes,
    )
