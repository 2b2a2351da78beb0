"""A folder of class sub-folders (torchvision's ImageFolder layout) as the uint8 arrays the CIFAR-10 path uses.

Each class is a sub-folder named after it; its images may sit in nested folders. Every image is read as
``predict`` reads one (:func:`~ghostmixnet.data.images.load_image`: EXIF orientation, 16-bit and float
pixels scaled, centre-cropped and resized to the run's image size, 32x32 by default), so training and
prediction see the same pixels. Decoding thousands of photos is the slow part, so it is done once: the arrays
go into a cache file named by a hash of the file list, sizes and modification times and the image size (a
changed folder is read again), written atomically and read without pickle.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_open
from .cifar import ArraySet
from .images import IMAGE_EXTENSIONS, ImageError, load_image

CACHE_PREFIX = ".ghostmixnet-cache-"


@dataclass(frozen=True)
class FolderIndex:
    """What a class folder holds: its classes (sorted sub-folder names) and its image files with labels."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]

    def key(self, size: int = 32) -> str:
        """16 hex digits of a hash of the classes, every file's path, size and modification time, and the image
        ``size`` read at (left out at 32, so that caches written before sizes existed still count). An entry
        that cannot be looked at (a dangling link, one removed since the listing) counts as its error here: the
        read that follows names it in the package's words, or skips it with --skip-bad."""
        digest = hashlib.sha256("\n".join(self.classes).encode() + (f"\n{size}px".encode() if size != 32 else b""))
        for path, label in zip(self.files, self.labels):
            try:
                stat = path.stat()
                seen = f"{stat.st_size}\t{stat.st_mtime_ns}"
            except OSError as e:
                seen = f"error {e.errno}"
            digest.update(f"\n{path.relative_to(self.root)}\t{label}\t{seen}".encode())
        return digest.hexdigest()[:16]


def scan_classes(root: Path) -> FolderIndex:
    """The classes and image files under ``root``: one sub-folder per class, at least two, each with an
    image; refused with one line naming the problem otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one sub-folder of images per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    linked = [p.name for p in folders if p.is_symlink()]
    if linked:
        raise DataError(f"{root}: class folder {linked[0]!r} is a link; links are not followed (they can loop or "
                        "leave the folder): copy or move the images there")
    if len(folders) < 2:
        raise DataError(f"{root} holds {len(folders)} class folder(s); a classifier needs at least two, one "
                        "sub-folder of images per class")
    seen: dict[str, str] = {}
    for p in folders:
        other = seen.setdefault(p.name.strip().casefold(), p.name)
        if other != p.name:
            raise DataError(f"{root}: class folders {other!r} and {p.name!r} differ only in case or spaces; merge "
                            "them or rename one")
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(Path(dirpath) / name for dirpath, _, names in os.walk(folder) for name in names
                       if Path(name).suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise DataError(f"{root}: class folder {folder.name!r} holds no images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add some or remove the folder")
        files += found
        labels += [label] * len(found)
    return FolderIndex(root, tuple(p.name for p in folders), tuple(files), tuple(labels))


def decode_folder(index: FolderIndex, skip_bad: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  echo: Callable[[str], None] | None = None, size: int = 32) -> tuple[ArraySet, list[str]]:
    """Every image of ``index`` as ``size`` x ``size`` uint8, with its label; with ``skip_bad`` an unreadable
    file is left out and named in the returned list (else it stops the read with one line). ``progress`` is
    told (done, total) as images are read."""
    images, labels, skipped = [], [], []
    for i, (path, label) in enumerate(zip(index.files, index.labels)):
        try:
            pixels, _ = load_image(path, size=size)
        except ImageError as e:
            if not skip_bad:
                raise DataError(f"{e} (or pass --skip-bad to leave such files out)") from None
            skipped.append(f"{path}: {e}")
            if echo is not None:
                echo(f"skipped {path}: {e}")
            continue
        images.append(pixels)
        labels.append(label)
        if progress is not None:
            progress(i + 1, len(index.files))
    if not images:
        raise DataError(f"{index.root}: none of its {len(index.files)} images could be read")
    return ArraySet(np.stack(images), np.asarray(labels, dtype=np.int64)), skipped


def read_cache(path: Path, size: int = 32) -> tuple[ArraySet, tuple[str, ...]]:
    """A cache file's arrays of ``size``-pixel images and classes, read without pickle; a :class:`DataError`
    saying to delete it when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels, classes = f["images"], f["labels"], tuple(str(c) for c in f["classes"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cache {path} is corrupt ({type(e).__name__}); delete it and it is rebuilt") from None
    ok = (images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (size, size, 3)
          and labels.shape == (len(images),) and len(classes) >= 2 and labels.size
          and 0 <= labels.min() and labels.max() < len(classes))
    if not ok:
        raise DataError(f"cache {path} is corrupt (its arrays do not fit together); delete it and it is rebuilt")
    return ArraySet(images, labels.astype(np.int64)), classes


def load_folder(root: Path, cache_dir: Path | None = None, skip_bad: bool = False,
                progress: Callable[[int, int], None] | None = None,
                echo: Callable[[str], None] | None = None, size: int = 32) -> tuple[ArraySet, tuple[str, ...]]:
    """A class folder (:func:`scan_classes`) as arrays of ``size``-pixel images and its class names, from the
    cache in ``cache_dir`` (default: ``root``) when one matches the folder as it is now, else decoded
    (:func:`decode_folder`) and cached; a folder where the cache cannot be written is read without one
    (``echo`` says so)."""
    index = scan_classes(root)
    cache = Path(cache_dir if cache_dir is not None else root) / f"{CACHE_PREFIX}{index.key(size)}.npz"
    if cache.is_file():
        data, classes = read_cache(cache, size)
        if classes == index.classes:
            return data, classes
    data, _ = decode_folder(index, skip_bad, progress, echo, size)
    try:
        with atomic_open(cache, "wb") as f:
            np.savez(f, images=data.images, labels=data.labels, classes=np.asarray(index.classes))
    except OSError as e:
        if echo is not None:
            echo(f"note: could not write the cache {cache} ({e.strerror or e}); the folder is read again next time")
    return data, index.classes
