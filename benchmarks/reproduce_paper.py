"""The paper's 200 epochs as one prepared command within a wall-clock budget, continued exactly by the same
command when the budget runs out first.

One call trains the ``paper`` recipe (5,000 training images held out for validation) in the run folder
``--out`` until all epochs are done or the next one would not fit in ``--minutes`` (data unpacking and
compilation included), scoring the test set after every epoch for the curve only: the checkpoint is chosen
on the validation split, and ``test.json`` scores that one. A run that stops early leaves a resumable
``last.pt``; the same command with the same ``--out`` continues it from there, exactly (resume is exact at
any step, ``docs/training.md``). The record, at most 8 files of well under 16 MiB, goes to ``--record``:

- ``report.md``: the val-selected test accuracy (the project's protocol), the best test accuracy over all
  epochs (the paper's protocol, chosen on the test set), the curve beside the authors' at epochs 1, 5, 10,
  20, 50, 100, 150 and 200, and time and images/s;
- ``curve.csv`` and ``curve.png``: every epoch's validation and test accuracy, beside the authors';
- ``train.log``, ``metrics.csv``, ``config.json``, ``test.json`` (when finished) from the run;
- the fp16 weights file ``ghostmixnet_cifar10_paper-HASH8.safetensors`` (when finished).

The data come from ``--data-dir``, or from ``--parts`` (``benchmarks/cifar_parts.py``: the training set in
checked parts small enough to send to a GPU machine one command at a time), joined first. The last line
printed is the headline: ``paper_val_selected_test_accuracy: VALUE`` when finished, else
``paper_epochs_done: N``.

    python benchmarks/reproduce_paper.py --parts .cifar-parts --out /tmp/paper-run --record $OUT --minutes 9.3

and on the CPU, as the test runs it: ``--device cpu --epochs 3 --width 0.125 --train-subset 256 --val-size
64 --no-compile``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostmixnet.config import PAPER_BEST_TEST_ACCURACY, PAPER_TEST_CURVE, TrainConfig, make_config
from ghostmixnet.data.augment import resolve_augment_chunk
from ghostmixnet.data.cifar import ArraySet, load_cifar10
from ghostmixnet.deploy.pack import pack_checkpoint
from ghostmixnet.device import resolve_device
from ghostmixnet.files import pyplot, save_figure, write_text_atomic
from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.train.resume import LAST, PREVIOUS, load_resume_checkpoint, resume_config
from ghostmixnet.train.run import train
from ghostmixnet.train.throughput import training_throughput

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when loaded by path
from cifar_parts import join  # noqa: E402
from paper_state import MANIFEST, export_state, import_state  # noqa: E402

CURVE = "curve.csv"
REPORT_EPOCHS = (1, 5, 10, 20, 50, 100, 150, 200)
RUN_FILES = ("train.log", "metrics.csv", "config.json", "test.json")
"""What the record copies from the run folder, besides the curve."""
STEM = "ghostmixnet_cifar10_paper"
CANDIDATES: dict[str, dict[str, str]] = {
    "default": {},
    "whole-graph": {"step_graph": "whole"},
    "whole-graph-shifts": {"step_graph": "whole", "depthwise": "shifts"},
    "loss-graph": {"step_graph": "loss"},
    "shifts": {"depthwise": "shifts"},
}
"""The step's compute settings timed against each other, in the order timed (expected gain first after the
default, which is always timed first: the others' losses are checked against its)."""
LOSS_TOLERANCE = 0.05
"""A candidate whose mean loss over the timed steps is further than this share from the default's is refused:
the same batches from the same start differ only by rounding, a broken step by far more."""


def read_curve(path: Path) -> dict[int, dict[str, Any]]:
    """The per-epoch rows a run recorded so far, by epoch."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {int(r["epoch"]): {k: float(v) if v else None for k, v in r.items()} for r in csv.DictReader(f)}


def write_curve(path: Path, curve: dict[int, dict[str, Any]]) -> None:
    fields = ["epoch", "val_acc", "test_acc", "published_test_acc", "train_seconds", "images_per_s"]
    lines = [",".join(fields)]
    for epoch in sorted(curve):
        lines.append(",".join("" if curve[epoch].get(k) is None else f"{curve[epoch][k]:g}" for k in fields))
    write_text_atomic(path, "\n".join(lines) + "\n")


def base_config(args: argparse.Namespace) -> TrainConfig:
    """The paper recipe at the flags' size, on the default step."""
    return make_config("paper", epochs=args.epochs, width=args.width, batch_size=args.batch_size,
                       val_size=args.val_size, train_subset=args.train_subset, compile=args.compile)


def config_for(args: argparse.Namespace, step: dict[str, str]) -> tuple[TrainConfig, bool]:
    """A new run's config from the flags and the chosen ``step`` settings, or the run's own (its step included)
    when ``--out`` holds one to continue."""
    if (args.out / LAST).is_file() or (args.out / PREVIOUS).is_file():
        return resume_config(args.out, {})[0], True
    return dataclasses.replace(base_config(args), **step), False


def time_candidates(cfg: TrainConfig, names: list[str], device: torch.device, steps: int, warmup: int,
                    minutes: float) -> dict[str, Any]:
    """Time each candidate step of ``cfg`` for ``warmup`` untimed (compilation, capture) then ``steps`` timed steps
    on the same synthetic batches (the speed does not depend on the pixels), within ``minutes``; the fastest whose
    loss agrees with the default's is chosen. A candidate that fails is recorded with its error, not chosen."""
    started = time.perf_counter()
    per_chunk = resolve_augment_chunk(cfg.augment_chunk, device)  # training_throughput rounds to whole chunks
    count = (-(-warmup // per_chunk) + -(-steps // per_chunk)) * per_chunk * cfg.batch_size
    rng = np.random.default_rng(0)
    data = ArraySet(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                    rng.integers(0, cfg.num_classes, count).astype(np.int64))
    results, longest = [], 0.0
    for name in ["default", *(n for n in names if n != "default")]:
        left = 60 * minutes - (time.perf_counter() - started)
        if results and left < longest:
            results.append({"name": name, "settings": CANDIDATES[name], "error": "not timed: out of time"})
            continue
        began = time.perf_counter()
        try:
            measured = training_throughput(dataclasses.replace(cfg, **CANDIDATES[name]), data, steps, warmup, device)
            row = {"images_per_s": measured.images_per_s, "loss": measured.loss,
                   "warmup_seconds": measured.warmup_seconds}
        except Exception as e:  # a candidate that cannot run here is reported, and the others still timed
            row = {"error": f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"}
        torch.compiler.reset()
        longest = max(longest, time.perf_counter() - began)
        results.append({"name": name, "settings": CANDIDATES[name], "seconds": time.perf_counter() - began, **row})
    return {"device": str(device), "steps": steps, "warmup": warmup, "batch_size": cfg.batch_size,
            "candidates": results, "chosen": choose(results)}


def choose(results: list[dict[str, Any]]) -> str:
    """The fastest candidate that ran and whose loss agrees with the default's (the default if none does)."""
    reference = next((r.get("loss") for r in results if r["name"] == "default"), None)
    for r in results:
        if "images_per_s" in r and reference is not None and np.isfinite(reference):
            r["loss_agrees"] = bool(abs(r["loss"] - reference) <= LOSS_TOLERANCE * abs(reference))
    usable = [r for r in results if r.get("loss_agrees")]
    return max(usable, key=lambda r: r["images_per_s"])["name"] if usable else "default"


def step_settings(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The step's settings the run trains with: ``--step NAME``, or with ``auto`` the choice kept in ``--choice``
    (an earlier call on this machine) or made now by timing the candidates (and kept there)."""
    if args.step != "auto":
        return CANDIDATES[args.step], None
    if args.choice is not None and args.choice.is_file():
        try:
            timing = json.loads(args.choice.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            timing = {}  # unreadable: timed again below, and rewritten
        if isinstance(timing, dict) and timing.get("device") == str(device) and timing.get("chosen") in CANDIDATES:
            print(f"step: {timing['chosen']} (timed earlier: {args.choice})")
            return CANDIDATES[timing["chosen"]], timing
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    timing = time_candidates(base_config(args), names, device, args.candidate_steps, args.candidate_warmup,
                             args.choose_minutes)
    for r in timing["candidates"]:
        speed = f"{r['images_per_s']:,.0f} images/s, loss {r['loss']:.4f}" if "images_per_s" in r else r["error"]
        print(f"step candidate {r['name']}: {speed}")
    print(f"step: {timing['chosen']} (the fastest whose loss agrees with the default's)")
    if args.choice is not None:
        args.choice.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.choice, json.dumps(timing, indent=2) + "\n")
    return CANDIDATES[timing["chosen"]], timing


def trained_seconds(out: Path) -> float:
    """The training seconds of the run in ``out`` so far (its finished epochs and the partial one; 0 for none)."""
    if not ((out / LAST).is_file() or (out / PREVIOUS).is_file()):
        return 0.0
    ckpt, _ = load_resume_checkpoint(out, log=lambda _line: None)
    return sum(float(row["seconds"]) for row in ckpt["history"]) + float(ckpt.get("partial", {}).get("seconds", 0.0))


def run(args: argparse.Namespace, data_dir: Path, started: float, device: torch.device,
        step: dict[str, str]) -> dict[str, Any]:
    """Train (or continue) the run until done or out of budget, scoring the test set after every epoch."""
    cfg, resume = config_for(args, step)
    test = load_cifar10(data_dir, train=False)
    curve = read_curve(args.out / CURVE)
    budget = 60 * args.minutes

    def left() -> float:
        return budget - (time.perf_counter() - started)

    last_end = [time.perf_counter()]

    def after_epoch(row: dict[str, Any], model: torch.nn.Module) -> bool:
        scored = evaluate(model, test.images, test.labels, device, tta=cfg.tta, tta_shift=cfg.tta_shift)
        curve[row["epoch"]] = {"epoch": row["epoch"], "val_acc": row["val_acc"], "test_acc": scored.accuracy,
                               "published_test_acc": PAPER_TEST_CURVE.get(row["epoch"]),
                               "train_seconds": row["seconds"], "images_per_s": row["images_per_s"]}
        write_curve(args.out / CURVE, curve)
        # Stop while another epoch like this one (validation and test scoring included) still fits.
        now = time.perf_counter()
        epoch_wall, last_end[0] = now - last_end[0], now
        return left() - args.reserve < epoch_wall

    # The run's time limit counts all its training, earlier commands' too; this command's budget is what is left.
    limit = trained_seconds(args.out) + max(left() - args.reserve, 1.0)
    summary = train(cfg, data_dir, args.out, device=str(device), resume=resume, log_every=args.log_every,
                    stop_after=args.stop_after, time_limit=limit, epoch_end=after_epoch)
    return {"config": cfg.to_dict(), "summary": dict(summary), "curve": curve, "resumed": resume,
            "step": {k: getattr(cfg, k) for k in ("step_graph", "depthwise", "compile_mode", "augment_chunk")}}


def report(result: dict[str, Any], wall_seconds: float) -> str:
    """The run's report in Markdown: both protocols' figures, the curve at the landmark epochs, time."""
    cfg, summary, curve = result["config"], result["summary"], result["curve"]
    done, epochs = summary["epochs_done"], cfg["epochs"]
    lines = ["# The paper's recipe, reproduced", "",
             f"{done} of {epochs} epochs done" + (" (continued from an earlier command)" if result["resumed"]
                                                   else "") + f"; this command took {wall_seconds / 60:.1f} minutes.",
             "", "The step: " + ", ".join(f"{k} {v}" for k, v in result.get("step", {}).items()) + ".", ""]
    if curve:
        best = max(curve.values(), key=lambda r: r["test_acc"])
        lines.append(f"- best test accuracy over the {len(curve)} epochs scored, the paper's protocol (chosen on the "
                     f"test set, so optimistic): {100 * best['test_acc']:.2f}% at epoch {int(best['epoch'])}; the "
                     f"paper reports {PAPER_BEST_TEST_ACCURACY:.2f}%")
    if "test_acc" in summary and done == epochs:
        lines.append(f"- val-selected test accuracy, the project's protocol (best.pt chosen on the validation "
                     f"split at epoch {summary['best_epoch']}, {100 * summary['best_val_acc']:.2f}% there, then "
                     f"scored once): **{100 * summary['test_acc']:.2f}%**")
    if done < epochs:
        lines.append("- not finished: give the same command the same --out to continue it exactly")
    ordered = [curve[e] for e in sorted(curve)]
    speeds = [r["images_per_s"] for r in (ordered[1:] or ordered)]
    if speeds:
        lines.append(f"- training: {summary['train_seconds'] / 60:.1f} minutes in all, "
                     f"{statistics.median(speeds):,.0f} images/s (median epoch, the first left out: compilation)")
    lines += ["", "| epoch | val acc | test acc | authors' test acc |", "|---:|---:|---:|---:|"]
    for epoch in REPORT_EPOCHS:
        row, published = curve.get(epoch), PAPER_TEST_CURVE.get(epoch)
        if row is None and published is None:
            continue
        val = f"{100 * row['val_acc']:.2f}%" if row and row.get("val_acc") is not None else ""
        test = f"{100 * row['test_acc']:.2f}%" if row else ""
        lines.append(f"| {epoch} | {val} | {test} | {f'{published:.2f}%' if published else ''} |")
    return "\n".join(lines) + "\n"


def plot(curve: dict[int, dict[str, Any]], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=100)
    epochs = sorted(curve)
    ax.plot(epochs, [100 * curve[e]["test_acc"] for e in epochs], label="test (this run)")
    ax.plot(epochs, [100 * curve[e]["val_acc"] if curve[e]["val_acc"] is not None else float("nan")
                     for e in epochs], label="validation (this run)")
    ax.plot(list(PAPER_TEST_CURVE), list(PAPER_TEST_CURVE.values()), "o--", label="test (the authors' run)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("GhostMixNet, paper recipe, CIFAR-10")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_record(args: argparse.Namespace, result: dict[str, Any], wall_seconds: float) -> list[Path]:
    """The record into ``--record``, at most 8 files: when finished, the report, the curve, the run's files and the
    weights; else the report, the curve and the resumable state (``paper_state.py``: the run's files travel in
    it), so that a later window continues the run exactly."""
    record = args.record
    record.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record / "report.md", report(result, wall_seconds))
    written = [record / "report.md"]
    if result["curve"]:
        plot(result["curve"], record / "curve.png")
        written.append(record / "curve.png")
    finished = result["summary"]["epochs_done"] == result["config"]["epochs"]
    for name in (CURVE, *(RUN_FILES if finished or not args.export_state else ())):
        if (args.out / name).is_file():
            shutil.copyfile(args.out / name, record / name)
            written.append(record / name)
    if not finished and args.export_state:
        written += export_state(args.out, record, epochs_done=result["summary"]["epochs_done"])
    elif finished:
        for old in [*record.glob("state.[0-9][0-9][0-9]"), record / MANIFEST]:
            old.unlink(missing_ok=True)
    if finished and "test_acc" in result["summary"]:
        for old in record.glob(f"{STEM}-*.safetensors"):
            old.unlink()
        written.append(pack_checkpoint(args.out, record, stem=STEM))
    return written


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, help="folder holding cifar-10-batches-py")
    source.add_argument("--parts", type=Path, help="CIFAR-10 in parts (benchmarks/cifar_parts.py), joined first")
    p.add_argument("--out", type=Path, default=None, help="the run folder, new or to continue")
    p.add_argument("--state", type=Path, default=None,
                   help="continue the run whose exported state is in this folder (paper_state.py), if --out holds none")
    p.add_argument("--export-state", action=argparse.BooleanOptionalAction, default=True,
                   help="an unfinished run's record carries its resumable state [on]")
    p.add_argument("--step", default="auto", choices=["auto", *CANDIDATES],
                   help="the step's compute settings; auto: time the candidates here and train with the fastest")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="the candidates auto times, in order")
    p.add_argument("--candidate-steps", type=int, default=32, help="timed steps per candidate [32]")
    p.add_argument("--candidate-warmup", type=int, default=16, help="untimed first steps per candidate [16]")
    p.add_argument("--choose-minutes", type=float, default=3.0, help="time for timing the candidates [3]")
    p.add_argument("--choice", type=Path, default=None,
                   help="keep the timing in this file, and reuse it when it is there (an earlier call's)")
    p.add_argument("--choose-only", action="store_true", help="time the candidates, keep the choice, and stop")
    p.add_argument("--record", type=Path, default=None, help="where the record goes [OUT/record]")
    p.add_argument("--minutes", type=float, default=9.3, help="wall-clock budget of this command [9.3]")
    p.add_argument("--reserve", type=float, default=30, help="seconds kept for the finish and the record [30]")
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=200, help="[200, the paper's]")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--train-subset", type=int, default=None, help="train on this many images (CPU tests)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--stop-after", type=int, default=None, help="end this command after N epochs")
    p.add_argument("--log-every", type=int, default=100)
    args = p.parse_args(argv)
    unknown = [n for n in args.candidates.split(",") if n.strip() and n.strip() not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate {', '.join(unknown)}: choose among {', '.join(CANDIDATES)}")
    device = resolve_device(args.device)
    if args.choose_only:
        return {"step": step_settings(args, device)[0]}
    if args.out is None or (args.data_dir is None and args.parts is None):
        p.error("--out and one of --data-dir or --parts are needed (or --choose-only)")
    args.record = args.record or args.out / "record"
    if args.state is not None and not (args.out / LAST).is_file() and not (args.out / PREVIOUS).is_file():
        print(f"continuing from the state in {args.state}: {len(import_state(args.state, args.out))} files")
    resuming = (args.out / LAST).is_file() or (args.out / PREVIOUS).is_file()
    step = {} if resuming else step_settings(args, device)[0]  # a run continued keeps its own step
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if args.parts is not None:
            data_dir = join(args.parts, Path(tmp)).parent
        result = run(args, data_dir, started, device, step)
    wall = time.perf_counter() - started
    written = write_record(args, result, wall)
    print(report(result, wall))
    for path in written:
        print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")
    summary = result["summary"]
    if summary["epochs_done"] == result["config"]["epochs"] and "test_acc" in summary:
        print(f"paper_val_selected_test_accuracy: {100 * summary['test_acc']:.2f}")
    else:
        print(f"paper_epochs_done: {summary['epochs_done']}")
    return result


if __name__ == "__main__":
    main()
