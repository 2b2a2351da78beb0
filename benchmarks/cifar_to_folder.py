"""CIFAR-10 written out as folders of PNG files (``OUT/train/CLASS/INDEX.png``, ``OUT/test/CLASS/INDEX.png``),
the layout torchvision's ImageFolder and timm read, to check that a class folder gives the same images as
the pickles: PNG is lossless, and 32x32 images pass through ``load_image`` unresized.

Prints the seconds of the first read of ``OUT/train`` (decoding every file, building the cache) and of a
second, cached read, and whether the arrays equal the pickles' (sorted by class, as the folder lists them).

    python benchmarks/cifar_to_folder.py --data-dir ../shared/data --out /tmp/cifar10-png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ghostmixnet.data.cifar import CLASSES, ArraySet, load_cifar10
from ghostmixnet.data.folders import load_folder


def write_split(data: ArraySet, out: Path, limit: int | None = None) -> int:
    """Write the first ``limit`` images of ``data`` (all by default) as PNG files, one folder per class."""
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    count = len(data) if limit is None else min(limit, len(data))
    for i in range(count):
        Image.fromarray(data.images[i]).save(out / CLASSES[int(data.labels[i])] / f"{i:05d}.png")
    return count


def by_class(data: ArraySet, count: int) -> np.ndarray:
    """The first ``count`` images in the order a class folder lists them: by class, then by index."""
    return data.images[:count][np.argsort(data.labels[:count], kind="stable")]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="write only the first N images of each split")
    args = parser.parse_args(argv)
    train = load_cifar10(args.data_dir, train=True)
    written = write_split(train, args.out / "train", args.limit)
    write_split(load_cifar10(args.data_dir, train=False), args.out / "test", args.limit)
    t0 = time.perf_counter()
    first, classes = load_folder(args.out / "train")
    t1 = time.perf_counter()
    cached, _ = load_folder(args.out / "train")
    t2 = time.perf_counter()
    same = bool(np.array_equal(first.images, by_class(train, written)) and np.array_equal(cached.images, first.images)
                and list(classes) == sorted(CLASSES))
    result = {"images": written, "first_read_s": t1 - t0, "cached_read_s": t2 - t1, "equal": same}
    print(f"{written} training images: first read {result['first_read_s']:.1f} s, cached read "
          f"{result['cached_read_s']:.2f} s; arrays equal to the pickles': {same}")
    return result


if __name__ == "__main__":
    main()
