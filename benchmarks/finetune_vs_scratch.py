"""Fine-tuning the shipped CIFAR-10 weights against training from scratch, on data that is not CIFAR-10.

The data: scikit-learn's handwritten digits (1,797 greyscale 8x8 images of the digits 0-9, the test part of
the UCI "Optical Recognition of Handwritten Digits" set), which scikit-learn carries inside its package, so
nothing is downloaded. It is a fair test of transfer: other images (pen strokes, not photos), other classes,
another size (8x8, resized to 32x32 as ``predict`` resizes), and few of them, where a start matters most.
The script writes them as a PNG class folder and trains from it as a user would train from theirs; a run
holds out 10% of each class for validation and 10% for test (``--holdout``).

Both runs use the ``finetune`` recipe with the same epochs, seed and data; the scratch run starts from random
weights and trains every layer at the full learning rate (``--init`` unset, ``--backbone-lr-scale 1``).
Digits are not mirror images of each other, so both train without flips or mirrored test views
(``--augment none --no-tta``). With ``--time-budget MINUTES`` a last fine-tuning run is sized to that much
training time (``ghostmixnet train --time-budget``).

    pip install scikit-learn
    python benchmarks/finetune_vs_scratch.py --out /tmp/finetune --epochs 10 --seeds 0,1 --time-budget 30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ghostmixnet.config import make_config
from ghostmixnet.train.launch import launch
from ghostmixnet.train.run import train

DIGIT_OVERRIDES = {"augment": "none", "tta": False}
"""What digits need of the finetune recipe: no mirrored images (a mirrored 2 is no digit)."""


def write_digits(out: Path, limit: int | None = None) -> int:
    """scikit-learn's digits as ``out/DIGIT/NNNN.png`` (8x8 greyscale, 0-16 scaled to 0-255); the count."""
    from sklearn.datasets import load_digits  # optional: pip install scikit-learn

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    keep = range(len(images)) if limit is None else range(min(limit, len(images)))
    for i in keep:
        folder = out / str(int(digits.target[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i], mode="L").save(folder / f"{i:04d}.png")
    return len(keep)


def compare(data: Path, out: Path, seed: int, overrides: dict[str, Any]) -> dict[str, float]:
    """Test accuracy of the fine-tuned and the from-scratch run of one seed."""
    tuned = make_config("finetune", seed=seed, **overrides)
    scratch = dataclasses.replace(tuned, init=None, backbone_lr_scale=1.0)
    scores = {}
    for name, cfg in (("finetune", tuned), ("scratch", scratch)):
        summary = train(cfg, data, out / f"{name}-seed{seed}", echo=lambda _: None)
        scores[name] = summary["test_acc"]
        scores[f"{name}_val"] = summary["best_val_acc"]
    return scores


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the images and the runs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--batch-size", type=int, default=None, help="[the finetune recipe's]")
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N digits (tests)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="also fine-tune for this much training time and report its test accuracy")
    args = parser.parse_args(argv)
    data = args.out / "digits"
    images = write_digits(data, args.limit)
    overrides = {**DIGIT_OVERRIDES, "epochs": args.epochs, "batch_size": args.batch_size, "holdout": args.holdout,
                 "compile": args.compile}
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {seed: compare(data, args.out, seed, overrides) for seed in seeds}
    result: dict[str, Any] = {"images": images, "epochs": args.epochs, "seeds": seeds, "runs": runs}
    for name in ("finetune", "scratch"):
        accs = [r[name] for r in runs.values()]
        result[name] = {"mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None}
    print(f"{images} digits, {args.epochs} epochs, test accuracy over {len(seeds)} seed(s):")
    for name in ("finetune", "scratch"):
        each = ", ".join(f"{100 * r[name]:.2f}%" for r in runs.values())
        print(f"  {name:<9} mean {100 * result[name]['mean']:.2f}% ({each})")
    if args.time_budget:
        budget = {k: v for k, v in overrides.items() if k != "epochs"}
        summary = launch("finetune", budget, data_dir=data, out=args.out / "finetune-budget",
                         time_budget=args.time_budget, echo=lambda _: None)
        result["budget"] = {"minutes": args.time_budget, "epochs": summary["epochs"],
                            "test_acc": summary.get("test_acc"), "best_val_acc": summary["best_val_acc"]}
        print(f"  finetune in {args.time_budget:g} training-minutes ({summary['epochs']} epochs): test "
              f"{100 * summary.get('test_acc', float('nan')):.2f}%")
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
