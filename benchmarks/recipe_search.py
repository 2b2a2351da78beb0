"""Recipe search: variants of the `fast` recipe trained for a fixed number of epochs, ranked on validation.

A screen, not a timed benchmark: each variant trains a fixed number of epochs (the step count a CPU
budget allows), so what it learns does not depend on the machine's speed or on other runs beside it,
and several variants may share one machine (``--jobs``; on a GPU they take turns on it). Each run is a
`ghostmixnet train` run folder; its chosen checkpoint is then scored on the validation split with
mirror test-time augmentation and with mirror plus shifted views (``--tta-shifts``). Selection uses the
validation split only; the test set is scored by each run (as every run does) but is not read here.

A grid file has one variant per line, ``NAME field=value ...`` (config fields; ``#`` starts a comment);
every variant starts from the `fast` recipe with ``--epochs``. Results go to OUT/results.json and
OUT/results.md, rewritten as each run ends, so an interrupted search keeps what it finished; finished
runs are read back, not trained again.

    python benchmarks/recipe_search.py --data-dir ../shared/data --grid benchmarks/grids/fast-8.txt \\
        --epochs 8 --jobs 3 --out runs/recipe-search
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ghostmixnet.cli import build_parser, config_overrides
from ghostmixnet.config import TrainConfig, make_config
from ghostmixnet.data.splits import load_splits
from ghostmixnet.device import Compute, resolve_device
from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.model.factory import build_model


def read_grid(path: Path) -> list[tuple[str, dict[str, str]]]:
    """``(name, {field: value})`` per variant line of a grid file."""
    variants = []
    for line in Path(path).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        name, pairs = words[0], words[1:]
        bad = [p for p in pairs if "=" not in p]
        if bad:
            raise SystemExit(f"{path}: variant {name}: expected field=value, got {bad}")
        variants.append((name, dict(p.split("=", 1) for p in pairs)))
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: variant names repeat")
    return variants


def train_command(name: str, fields: dict[str, str], args: argparse.Namespace) -> list[str]:
    flags = []
    for key, value in fields.items():
        flag = key.replace("_", "-")
        flags.append(f"--{flag}" if value == "true" else f"--no-{flag}" if value == "false" else f"--{flag}={value}")
    return [sys.executable, "-m", "ghostmixnet", "train", "--recipe", "fast", "--epochs", str(args.epochs),
            "--data-dir", str(args.data_dir), "--out", str(args.out / name), "--device", args.device, *flags]


def score(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Validation accuracy of the run's best.pt: plain, mirror TTA, and mirror plus each shift."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout)
    model.load_state_dict(ckpt["model"])
    device = resolve_device(args.device)
    splits = load_splits(args.data_dir, cfg.val_size, cfg.split_seed, cfg.train_subset)
    compute = Compute.resolve(device, "fp32")
    model.to(device)
    val = {"plain": evaluate(model, splits.val.images, splits.val.labels, compute).accuracy,
           "mirror": evaluate(model, splits.val.images, splits.val.labels, compute, tta=True).accuracy}
    for shift in args.tta_shifts:
        val[f"mirror+shift{shift}"] = evaluate(model, splits.val.images, splits.val.labels, compute, tta=True,
                                               tta_shift=shift).accuracy
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return {"epoch": ckpt.get("epoch"), "val": val, "train_seconds": summary.get("train_seconds")}


def write_results(results: dict[str, Any], out: Path, epochs: int) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    keys = sorted({k for r in results.values() if "val" in r for k in r["val"]}, key=lambda k: (len(k), k))
    lines = [f"| variant ({epochs} epochs) | overrides | " + " | ".join(f"val {k}" for k in keys) + " |",
             "|---|---|" + "---:|" * len(keys)]
    for name, r in results.items():
        cells = [f"{100 * r['val'][k]:.2f}%" if k in r.get("val", {}) else r.get("error", "") for k in keys]
        lines.append(f"| {name} | {' '.join(f'{k}={v}' for k, v in r['fields'].items()) or '(fast)'} | "
                     + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    parser.add_argument("--grid", type=Path, required=True, help="variants, one per line: NAME field=value ...")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every variant [8]")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once [1]")
    parser.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                        help="start no run after this many minutes (runs started finish)")
    parser.add_argument("--tta-shifts", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2],
                        help="shifts of the extra validation scores [1,2]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/recipe-search"))
    args = parser.parse_args()
    variants = read_grid(args.grid)
    for name, fields in variants:  # a typo fails here, not minutes later
        argv = train_command(name, fields, args)[3:]
        make_config("fast", **config_overrides(build_parser(argv).parse_args(argv)))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    pending = [(n, f) for n, f in variants]
    running: dict[str, tuple[subprocess.Popen, Any, dict[str, str]]] = {}
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while pending or running:
        while pending and len(running) < args.jobs and (args.budget is None
                                                        or time.monotonic() - start < 60 * args.budget):
            name, fields = pending.pop(0)
            if (args.out / name / "test.json").is_file():
                running[name] = (None, None, fields)
                continue
            log = open(args.out / f"{name}.log", "w")
            print(f"start {name}: {' '.join(f'{k}={v}' for k, v in fields.items())}", flush=True)
            running[name] = (subprocess.Popen(train_command(name, fields, args), stdout=log,
                                              stderr=subprocess.STDOUT, env=env), log, fields)
        if pending and not running:
            break  # out of budget
        for name, (proc, log, fields) in list(running.items()):
            if proc is not None and proc.poll() is None:
                continue
            del running[name]
            if log is not None:
                log.close()
            try:
                if proc is not None and proc.returncode:
                    raise RuntimeError(f"exit {proc.returncode}, see {name}.log")
                results[name] = {"fields": fields, **score(args.out / name, args)}
            except Exception as error:  # one failed variant must not lose the others
                results[name] = {"fields": fields, "error": str(error)}
            shown = results[name].get("val", results[name].get("error"))
            print(f"done {name} after {(time.monotonic() - start) / 60:.1f} min: {shown}", flush=True)
            write_results(results, args.out, args.epochs)
        time.sleep(1)
    skipped = [n for n, _ in pending]
    if skipped:
        print(f"out of budget; not started: {', '.join(skipped)}")
    write_results(results, args.out, args.epochs)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
