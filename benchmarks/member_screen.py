"""Screen candidate small members of the family on the validation split: each trained with one short recipe, the
same seed and split, then ranked by validation accuracy (the test accuracy is reported beside it, never chosen on).

    python benchmarks/member_screen.py --data-dir ../shared/data --out /tmp/screen --epochs 8
    python benchmarks/member_screen.py --data-dir ../shared/data --out /tmp/screen --only ic01-c,ic01-j

Each candidate is an :class:`~ghostmixnet.model.architectures.Architecture` registered for this process only;
the kept ones become members of the table in ``model/architectures.py``. Writes ``screen.md`` and
``screen.json`` in ``--out`` (a run folder per candidate beside them); a candidate whose run folder is complete
is read, not retrained, so a stopped screen continues where it was.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ghostmixnet.config import make_config
from ghostmixnet.config import types as config_types
from ghostmixnet.model.architectures import ARCHITECTURES, Architecture, build_architecture, count_parameters
from ghostmixnet.model.budgets import BUDGETS
from ghostmixnet.model.cost import total_macs
from ghostmixnet.train.run import train


def ghost(depths: tuple[int, ...], channels: tuple[int, ...], stem: int, se: int | None, note: str,
          strides: tuple[int, ...] = (1, 2, 2), se_stages: tuple[bool, ...] | None = None) -> Architecture:
    return Architecture("ghost", depths, channels, strides, stem_channels=stem, se_divisor=se, extra_bn=False,
                        description=note, se_stages=se_stages)


CANDIDATES: dict[str, tuple[str, Architecture]] = {
    # IC01 (80K parameters, 12.5M MACs): where ResNet-8 has one basic block per stage, Ghost blocks cost about
    # half, so the same budget holds about twice the blocks; the last stage's 3x3 convolutions hold most weights.
    "ic01-c": ("ic01", ghost((2, 2, 1), (16, 32, 64), 16, 4, "Ghost [2, 2, 1] at 16/32/64, SE C/4")),
    "ic01-j": ("ic01", ghost((1, 3, 1), (16, 32, 64), 16, 4, "Ghost [1, 3, 1] at 16/32/64, SE C/4")),
    "ic01-k": ("ic01", ghost((1, 2, 2), (16, 32, 48), 16, 4, "Ghost [1, 2, 2] at 16/32/48, SE C/4")),
    "ic01-l": ("ic01", ghost((2, 2, 2), (16, 24, 48), 16, 4, "Ghost [2, 2, 2] at 16/24/48, SE C/4")),
    "ic01-c-nose": ("ic01", ghost((2, 2, 1), (16, 32, 64), 16, None, "Ghost [2, 2, 1] at 16/32/64, no SE")),
    # The candidates above need more than IC01's 64 KB arena in TFLite Micro (their 16-channel 32x32 maps and SE's
    # operators: docs/microcontrollers.md); with every stage at stride 2 after the stem it fits (57,936 bytes).
    "ic01-s2": ("ic01", ghost((2, 2, 1), (16, 32, 64), 16, 4, "Ghost [2, 2, 1] at 16/32/64, strides 2, 2, 2, SE C/4",
                              strides=(2, 2, 2))),
    # Measured to fit the 64 KB arena (docs/microcontrollers.md): 12 channels at 32x32, no SE there.
    "ic01-c12-se23": ("ic01", ghost((2, 2, 1), (12, 32, 64), 12, 4, "Ghost [2, 2, 1] at 12/32/64, SE C/4 in stages 2-3",
                                    se_stages=(False, True, True))),
    "ic01-c12-se3": ("ic01", ghost((2, 2, 1), (12, 32, 64), 12, 4, "Ghost [2, 2, 1] at 12/32/64, SE C/4 in stage 3",
                                   se_stages=(False, False, True))),
    # IC02 (480K parameters, 76.5M MACs).
    "ic02-a": ("ic02", ghost((2, 2, 2), (32, 64, 128), 32, 8, "Ghost [2, 2, 2] at 32/64/128, SE C/8")),
    "ic02-b": ("ic02", ghost((2, 3, 2), (32, 64, 128), 32, 8, "Ghost [2, 3, 2] at 32/64/128, SE C/8")),
    "ic02-c": ("ic02", ghost((3, 3, 2), (32, 64, 128), 32, 8, "Ghost [3, 3, 2] at 32/64/128, SE C/8")),
    "ic02-b-se23": ("ic02", ghost((2, 3, 2), (32, 64, 128), 32, 8, "Ghost [2, 3, 2] at 32/64/128, SE C/8 in stages 2-3",
                                  se_stages=(False, True, True))),
    "ic02-c-se23": ("ic02", ghost((3, 3, 2), (32, 64, 128), 32, 8, "Ghost [3, 3, 2] at 32/64/128, SE C/8 in stages 2-3",
                                  se_stages=(False, True, True))),
}


def figures(name: str) -> dict[str, float]:
    model = build_architecture(name)
    return {"parameters": count_parameters(model), "macs": total_macs(model)}


def screen_one(name: str, args: argparse.Namespace) -> dict:
    out = args.out / name
    budget, arch = CANDIDATES[name]
    row = {"name": name, "budget": budget, "description": arch.description, **figures(name)}
    if not (out / "test.json").is_file():
        cfg = make_config(args.recipe, model=name, epochs=args.epochs, seed=args.seed, val_size=args.val_size,
                          compile=False, precision="fp32", num_workers=0)
        started = time.perf_counter()
        train(cfg, args.data_dir, out, resume=out.exists(), echo=lambda line: print(f"[{name}] {line}", flush=True))
        row["wall_minutes"] = (time.perf_counter() - started) / 60
    test = json.loads((out / "test.json").read_text())
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    val = [float(r.split(",")[5]) for r in rows if r.split(",")[5]]
    speed = [float(r.split(",")[7]) for r in rows]
    row.update(best_val_acc=max(val), test_acc=test["accuracy"], images_per_s=sum(speed) / len(speed),
               epochs=len(rows))
    return row


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"Recipe `{args.recipe}`, {args.epochs} epochs, seed {args.seed}, fp32 eager, validation split of "
             f"{args.val_size} training images; torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
             "| candidate | budget | what | parameters | MACs | val acc | test acc | train images/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["budget"], -r["best_val_acc"])):
        lines.append(f"| {r['name']} | {BUDGETS[r['budget']].name} | {r['description']} | {r['parameters']:,} | "
                     f"{r['macs'] / 1e6:.2f}M | {100 * r['best_val_acc']:.2f}% | {100 * r['test_acc']:.2f}% | "
                     f"{r['images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--only", default="", help="comma-separated candidates [all]")
    args = parser.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else CANDIDATES)]
    for name in names:
        if name not in CANDIDATES:
            parser.error(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")
        ARCHITECTURES[name] = CANDIDATES[name][1]
    config_types.CHOICES["model"] = tuple(ARCHITECTURES)  # the config checks names against its own copy
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(screen_one(name, args))
        (args.out / "screen.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "screen.md").write_text(markdown(rows, args))
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
