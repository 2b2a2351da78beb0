"""Screen fine-tuning choices on real photo sets: ``ghostmixnet train --recipe finetune`` with each variant's flags
on each set, one run after another, and a table of the best validation accuracy (what the choice is made on),
the test accuracy of that checkpoint (reported, never chosen on) and the wall time of each.

    python benchmarks/finetune_screen.py photos/fire-split photos/clothing-small \
        --variant "32=--image-size 32" --variant "64=--image-size 64" --out screen

Each ``--variant NAME=FLAGS`` is a name and the flags added to the recipe's; a run already in ``--out`` (its
``test.json`` written) is read, not repeated, so the screen can be stopped and continued. Each set is a folder
with ``train/`` and ``val/`` (and ``test/``) class folders (docs/own-data.md names the sets measured).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_variant(data: Path, flags: str, out: Path, threads: int | None = None) -> dict[str, float]:
    """Train the ``finetune`` recipe with ``flags`` on ``data`` into ``out`` (unless done there already); the best
    validation accuracy, its epoch, the test accuracy of its checkpoint and the seconds the command took."""
    timing = out / "wall_seconds.txt"
    if not (out / "test.json").is_file() or not timing.is_file():
        command = [sys.executable, "-m", "ghostmixnet", "train", "--recipe", "finetune", "--data-dir", str(data),
                   "--out", str(out), *shlex.split(flags)]
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        if out.exists():
            command.append("--resume")
        out.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(out.parent / f"{out.name}.log", "a") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        timing.write_text(f"{time.perf_counter() - started:.1f}\n")
    test = json.loads((out / "test.json").read_text())
    with open(out / "metrics.csv") as f:
        epochs = [row for row in csv.DictReader(f) if row["val_acc"]]
    return {"best_val": test["best_val_acc"], "best_epoch": test["best_epoch"], "test": test["accuracy"],
            "epochs": len(epochs), "seconds": float(timing.read_text())}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", type=Path, help="photo sets: folders with train/ and val/ (and test/)")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=FLAGS",
                   help="a name and the flags it adds to the finetune recipe (repeat)")
    p.add_argument("--out", type=Path, required=True, help="where the runs and results.jsonl go")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: torch's)")
    args = p.parse_args(argv)
    rows = []
    for data in args.sets:
        for variant in args.variant:
            name, _, flags = variant.partition("=")
            result = run_variant(data, flags, args.out / data.name / name, args.threads)
            rows.append({"set": data.name, "variant": name, "flags": flags, **result})
            print(f"{data.name:<16} {name:<22} val {100 * result['best_val']:6.2f}% (epoch {result['best_epoch']}) "
                  f"test {100 * result['test']:6.2f}%  {result['seconds']:6.0f} s", flush=True)
            with open(args.out / "results.jsonl", "a") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    return rows


if __name__ == "__main__":
    main()
