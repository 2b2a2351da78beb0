"""Accuracy under common corruptions, CIFAR-10-C style: a model scored on the CIFAR-10 test images under each of
the 15 corruptions of Hendrycks & Dietterich (2019) at severities 1 to 5, generated here
(``ghostmixnet.data.corruptions``: no download) with the parameters of their CIFAR-10 release.

The frost corruption blends in a procedural frost texture where CIFAR-10-C used photographs, and a few others
approximate the original's libraries (the module's docstring lists how), so the figures are close to, not equal
to, those a model scores on the published CIFAR-10-C arrays. Each corruption and severity has its own seeded
stream: the same ``--seed`` gives the same corrupted images on any machine.

MODEL is anything ``ghostmixnet eval`` takes: ``pretrained``, a ``.safetensors`` weights file, a checkpoint, a run
folder or an exported ``.onnx``. One view per image, on the CPU, in fp32. ``--images N`` scores an evenly spaced,
class-stratified subset of the 10,000 test images.

Writes OUT/corruptions.json (the figures, the model file's sha256, the image count, seed, date, versions and
commit) and OUT/corruptions.md (the table), prints the table; the last line is the headline. With
``--save-examples PNG``, a grid of one test image under every corruption at severities 1, 3 and 5.

    python benchmarks/corruption_benchmark.py pretrained --data-dir ../shared/data --out docs/corruptions \\
        --threads 2 --save-examples docs/corruptions/examples.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostmixnet import __version__
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.data.corruptions import CORRUPTIONS, SEVERITIES, check_choice, corrupt
from ghostmixnet.data.splits import load_splits
from ghostmixnet.device import Compute, resolve_device
from ghostmixnet.files import pyplot, save_figure, write_text_atomic
from ghostmixnet.infer.load import load_classifier, model_classes
from ghostmixnet.model.checkpoint import resolve_checkpoint
from ghostmixnet.model.weights import sha256_of
from ghostmixnet.report.robustness import corruption_accuracy, format_table

EXAMPLE_SEVERITIES = (1, 3, 5)


def stratified_subset(labels: np.ndarray, count: int) -> np.ndarray:
    """Sorted indices of ``count`` images: each class its share of ``count`` (largest remainders), taken at evenly
    spaced positions among that class's images; all of them when ``count`` is not smaller than the set."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    classes, sizes = np.unique(labels, return_counts=True)
    quota = sizes * count / len(labels)
    shares = np.floor(quota).astype(int)
    shares[np.argsort(-(quota - shares), kind="stable")[:count - shares.sum()]] += 1
    picked = [np.flatnonzero(labels == c)[((np.arange(k) + 0.5) * size / k).astype(int)]
              for c, size, k in zip(classes, sizes, shares) if k]
    return np.sort(np.concatenate(picked))


def save_examples(image: np.ndarray, names: list[str], path: Path, seed: int) -> None:
    """A grid: a row per corruption, the clean image then the image at severities 1, 3 and 5."""
    plt = pyplot()
    columns = ("clean", *(f"severity {s}" for s in EXAMPLE_SEVERITIES))
    fig, axes = plt.subplots(len(names), len(columns), figsize=(1.3 * len(columns) + 1.4, 1.3 * len(names)),
                             squeeze=False)
    for row, name in zip(axes, names):
        shown = [image] + [corrupt(image[None], name, s, seed)[0] for s in EXAMPLE_SEVERITIES]
        for ax, picture in zip(row, shown):
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    for ax, title in zip(axes[0], columns):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_file(model: str) -> Path:
    """The file MODEL names: an ONNX file itself, else the checkpoint or weights file it resolves to."""
    path = Path(model)
    return path if path.suffix.lower() == ".onnx" else resolve_checkpoint(path)


def names_list(text: str) -> list[str]:
    """``--corruptions``: comma-separated names of :data:`CORRUPTIONS`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        for name in names:
            check_choice(name, SEVERITIES[0])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return names


def severities_list(text: str) -> list[int]:
    """``--severities``: comma-separated numbers from 1 to 5."""
    try:
        severities = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of severities; choose one of 1, 2, 3, 4, 5, or "
                                         "several, comma-separated") from None
    try:
        for severity in severities:
            check_choice(CORRUPTIONS[0], severity)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return severities


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="pretrained, a .safetensors, a checkpoint, a run folder or an .onnx file")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the folder holding CIFAR-10")
    parser.add_argument("--out", type=Path, default=Path("corruptions"), help="where the JSON and table go")
    parser.add_argument("--images", type=int, default=None, help="score a stratified subset of this many test "
                        "images [all 10,000]")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the test images, or the model's validation split (to choose between models on, never "
                             "the test set) [test]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruptions' random streams [0]")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads [torch's default]")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--corruptions", type=names_list, default=list(CORRUPTIONS),
                        help="comma-separated names [all 15]")
    parser.add_argument("--severities", type=severities_list, default=list(SEVERITIES),
                        help="comma-separated severities [1,2,3,4,5]")
    parser.add_argument("--save-examples", type=Path, default=None, metavar="PNG",
                        help="also draw one test image under every corruption at severities 1, 3 and 5")
    args = parser.parse_args(argv)
    if args.images is not None and args.images < 1:
        parser.error("--images must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, cfg, _ = load_classifier(Path(args.model))
    classes = model_classes(model, cfg)
    if len(classes) != 10:
        raise ValueError(f"{args.model} classifies {len(classes)} classes; this benchmark needs a CIFAR-10 model")
    if args.split == "val":
        if cfg is None or cfg.selects_on_test:
            raise ValueError(f"{args.model} names no validation split; use --split test")
        test = load_splits(args.data_dir, cfg.val_size, cfg.split_seed).val
    else:
        test = load_cifar10(args.data_dir, train=False)
    if args.images is not None:
        test = test.subset(stratified_subset(test.labels, args.images))
    compute = Compute.resolve(resolve_device("cpu"), "fp32")
    started = time.perf_counter()
    result = corruption_accuracy(model, test.images, test.labels, compute,
                                 normalization=cfg.normalization if cfg is not None else None,
                                 batch_size=args.batch_size, names=args.corruptions, severities=args.severities,
                                 seed=args.seed)
    path = model_file(args.model)
    record = {
        "model": args.model, "model_file": path.name, "sha256": sha256_of(path) if path.is_file() else None,
        "split": args.split, "images": len(test), "seed": args.seed, "corruptions": args.corruptions,
        "severities": args.severities,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "ghostmixnet": __version__, "commit": git_commit(),
        "threads": torch.get_num_threads(), "total_seconds": time.perf_counter() - started,
        "frost": "procedural texture, not CIFAR-10-C's photographs", **result,
    }
    table = format_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "corruptions.json", json.dumps(record, indent=2) + "\n")
    write_text_atomic(args.out / "corruptions.md",
                      f"Accuracy (%) of `{args.model}` on {len(test)} CIFAR-10 {args.split} images under each "
                      f"corruption (seed {args.seed}); clean {100 * result['clean']:.2f}%.\n\n{table}")
    if args.save_examples is not None:
        save_examples(test.images[0], args.corruptions, args.save_examples, args.seed)
    seconds = result["seconds"]
    print(table)
    print(f"corrupting {seconds['corrupting']:.1f}s, scoring {seconds['scoring']:.1f}s, "
          f"{torch.get_num_threads()} threads")
    print(f"mean corruption accuracy {100 * result['mean_corruption_accuracy']:.2f}% "
          f"(clean {100 * result['clean']:.2f}%) on {len(test)} images")
    return record


if __name__ == "__main__":
    main()
