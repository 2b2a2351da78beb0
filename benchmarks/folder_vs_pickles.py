"""Training from a folder of PNG files is training from the pickles: CIFAR-10's default split written as
``train/``, ``val/`` and ``test/`` class folders reads back as the same arrays, and a fixed recipe and seed
trains the same first epoch from it, weight for weight.

A class folder lists its images class by class, while the official pickles interleave the classes, and a run
shuffles positions, not images: so the pickles are first rewritten in class order (same images, same batch
format; ``OUT/pickles``), and the folder (``OUT/folder``) is written from the run's split of those. The folder
run normalises with CIFAR-10's constants (``--normalize cifar10``), as the pickle run does. For contrast the
same epoch is also trained from the original pickles, whose only difference is the order of the images.

    python benchmarks/folder_vs_pickles.py --data-dir ../shared/data --out /tmp/folder-vs-pickles
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ghostmixnet.config import make_config
from ghostmixnet.data.cifar import CIFAR_FOLDER, CLASSES, TEST_FILE, TRAIN_FILES, ArraySet, load_cifar10
from ghostmixnet.data.sources import load_data
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.run import train


def class_order(data: ArraySet) -> ArraySet:
    """The same images ordered by class, each class in its original order: as a class folder lists them."""
    return data.subset(np.argsort(data.labels, kind="stable"))


def write_pickles(train_set: ArraySet, test_set: ArraySet, folder: Path) -> None:
    """``train_set`` as five official batch files and ``test_set`` as the test batch, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = zip(TRAIN_FILES, np.array_split(np.arange(len(train_set)), len(TRAIN_FILES)))
    for name, part in [*parts, (TEST_FILE, None)]:
        data = test_set if part is None else train_set.subset(part)
        rows = data.images.transpose(0, 3, 1, 2).reshape(len(data), 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": data.labels.tolist(), b"data": rows,
                         b"filenames": [f"{i:05d}.png".encode() for i in range(len(data))]}, f, protocol=2)


def write_folder(data: ArraySet, out: Path) -> None:
    """``data`` as PNG files, ``out/CLASS/NNNNN.png`` numbered in its order (so a folder lists them in it)."""
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        Image.fromarray(image).save(out / CLASSES[int(label)] / f"{i:05d}.png")


def first_epoch(run: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(run / "last.pt")
    return {"train_loss": ckpt["history"][0]["train_loss"], "model": ckpt["model"]}


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(torch.equal(t, b["model"][k]) for k, t in a["model"].items())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the data written and the runs")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--train-subset", type=int, default=5000, help="training images of the epoch compared")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    original = load_cifar10(args.data_dir, train=True), load_cifar10(args.data_dir, train=False)
    write_pickles(class_order(original[0]), class_order(original[1]), args.out / "pickles" / CIFAR_FOLDER)
    split = {"val_size": args.val_size, "holdout": 0.1, "split_seed": 0}
    from_pickles = load_data("cifar10", args.out / "pickles", **split)
    for part in ("train", "val", "test"):
        write_folder(getattr(from_pickles, part), args.out / "folder" / part)
    t0 = time.perf_counter()
    from_folder = load_data("folder", args.out / "folder", **split)
    read_s = time.perf_counter() - t0
    equal = all(np.array_equal(getattr(from_folder, p).images, getattr(from_pickles, p).images)
                and np.array_equal(getattr(from_folder, p).labels, getattr(from_pickles, p).labels)
                for p in ("train", "val", "test")) and from_folder.classes == CLASSES

    # Two epochs planned, one trained: the schedule is a two-epoch run's, and no test or calibration is spent.
    cfg = make_config(args.recipe, epochs=2, train_subset=args.train_subset, val_size=args.val_size, width=args.width,
                      batch_size=args.batch_size, compile=False)
    runs = {"pickles in class order": (cfg, args.out / "pickles"),
            "folder": (dataclasses.replace(cfg, dataset="folder", normalize="cifar10"), args.out / "folder"),
            "original pickles": (cfg, args.data_dir)}
    epochs = {}
    for name, (run_cfg, data) in runs.items():
        run = args.out / ("run-" + name.replace(" ", "-"))
        train(run_cfg, data, run, stop_after=1, echo=lambda _: None)
        epochs[name] = first_epoch(run)
    a, b, c = epochs.values()
    result = {"images": {p: len(getattr(from_folder, p)) for p in ("train", "val", "test")}, "read_s": read_s,
              "arrays_equal": bool(equal), "losses": {k: v["train_loss"] for k, v in epochs.items()},
              "same_weights": same_weights(a, b), "same_weights_as_original_order": same_weights(a, c)}
    print(f"folder {args.out / 'folder'}: {result['images']} images read in {read_s:.1f} s; arrays equal to the "
          f"pickles' split: {equal}")
    for name, loss in result["losses"].items():
        print(f"first-epoch training loss from the {name}: {loss!r}")
    same, other = result["same_weights"], result["same_weights_as_original_order"]
    print(f"weights after the epoch, folder vs pickles in class order: {'identical' if same else 'DIFFERENT'}; "
          f"vs the original pickles (other order): {'identical' if other else 'different'}")
    return result


if __name__ == "__main__":
    main()
