"""How long a fine-tune of a small folder of photos takes here, end to end: ``ghostmixnet train --recipe finetune``
on N photos in two class folders, timed from the command's start (imports, reading the folder, building,
compiling, training, validation, test scoring and calibration) to its exit.

The photos stand in for a user's: CIFAR-10 *test* images of two classes (cat, dog), enlarged to 96x96 and
saved as JPEG files, so that reading them decodes and resizes as a user's photos would. Only the time is
measured: which photos they are does not change it.

    python benchmarks/finetune_time.py --data-dir ../shared/data --photos 221 --epochs 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from ghostmixnet.data.cifar import CLASSES, load_cifar10


def write_photos(data_dir: Path, out: Path, photos: int, size: int = 96) -> Path:
    """``photos`` CIFAR-10 test images of cats and dogs, enlarged to ``size`` pixels, as ``out/CLASS/N.jpg``."""
    test = load_cifar10(data_dir, train=False)
    wanted = {CLASSES.index("cat"): "cat", CLASSES.index("dog"): "dog"}
    written = 0
    for i, label in enumerate(test.labels):
        if written == photos:
            break
        if int(label) in wanted:
            folder = out / wanted[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(test.images[i]).resize((size, size), Image.BICUBIC).save(folder / f"{i:05d}.jpg")
            written += 1
    return out


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    p.add_argument("--photos", type=int, default=221)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--extra", default="", help="more flags for ghostmixnet train, e.g. '--no-compile'")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="finetune-time-") as tmp:
        photos = write_photos(args.data_dir, Path(tmp) / "photos", args.photos)
        command = [sys.executable, "-m", "ghostmixnet", "train", "--recipe", "finetune", "--data-dir", str(photos),
                   "--out", str(Path(tmp) / "run"), "--epochs", str(args.epochs), *args.extra.split()]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
    print(f"finetune_seconds: {seconds:.1f}")
    return seconds


if __name__ == "__main__":
    main()
