"""Time to accuracy: test accuracy after a fixed budget of training time, `fast` recipe beside `paper`.

Both recipes train the same model on this machine on the default compute path (batched augmentation,
bf16 where the hardware has it natively, torch.compile) for the same budget of training time
(compilation included, validation excluded); each then scores the checkpoint its validation split
chose, once, on the 10,000 CIFAR-10 test images.

- fast: a one-cycle schedule needs its length up front, so the steps that fit the budget are measured
  first (a short timed run, as `ghostmixnet train --time-budget` does) and saved in
  OUT/fast-Mmin/calibration.json; each run starts from that plan and re-plans its steps from its own pace
  as it goes, ending inside the budget (``--epochs N`` trains N whole epochs instead, the budget a guard).
- paper: the paper's 200-epoch recipe, stopped when the budget runs out.

Runs are resumable folders (OUT/fast-Mmin/seed-N, OUT/paper-Mmin/seed-N for a budget of M minutes);
finished ones are read back, so seeds, budgets or the paper run can be added in later invocations.
OUT/budgets.md tabulates the fast recipe at every budget run so far. The last line is the headline
figure: the mean test accuracy of the fast recipe over its seeds at this invocation's budget (of the
paper recipe when the fast one is left out).

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --minutes 60 --seeds 0,1 --paper-seeds ''
    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --minutes 150 --seeds 0 --paper-seeds ''
    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --minutes 3 --train-subset 5000  # quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ghostmixnet.config import make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.device import resolve_device
from ghostmixnet.errors import RunError
from ghostmixnet.train.budget import MARGIN, epochs_for_steps, plan_budget
from ghostmixnet.train.replan import Budget
from ghostmixnet.train.seeds import run_seeds, seeds_markdown


def seeds_arg(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def calibrate(args: argparse.Namespace, common: dict, out: Path) -> dict:
    """The epochs of the fast recipe that fit the budget, from a short timed run of its training step
    (:func:`ghostmixnet.train.budget.plan_budget`, what `ghostmixnet train --time-budget` does), saved in
    ``out/calibration.json`` and read back by later invocations, so seeds added later train as many epochs."""
    path = out / "calibration.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if (saved["minutes"] == args.minutes and saved["train_subset"] == args.train_subset
                and saved.get("resolutions", "") == (args.resolutions or "") and "steps" in saved):
            print(f"calibration read from {path}: {saved['epochs']} epochs")
            return saved
    cfg = make_config("fast", **common)
    data = load_cifar10(args.data_dir, train=True)
    plan = plan_budget(cfg, data, args.minutes, resolve_device(args.device), args.calibration_steps, args.margin)
    saved = {**plan.to_dict(), "train_subset": args.train_subset, "resolutions": args.resolutions or ""}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")
    print(f"calibration: {plan.describe()}")
    return saved


def budget_table(out: Path) -> str:
    """One row per budget folder under ``out`` that has finished seeds of the fast recipe."""
    rows = []
    for folder in out.glob("fast-*min"):
        summary, calibration = folder / "seeds.json", folder / "calibration.json"
        if summary.is_file():
            result = json.loads(summary.read_text())
            # With --epochs and no calibration ever run, the folder has no calibration.json.
            plan = json.loads(calibration.read_text()) if calibration.is_file() else {
                "minutes": result["time_limit"] / 60, "images_per_s": None,
                "epochs": result["overrides"]["epochs"]}
            rows.append((plan["minutes"], plan, result))
    lines = ["| budget | epochs | images/s (calibration) | seeds | training time (share of budget) | val acc. | "
             "test acc. |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for minutes, plan, r in sorted(rows, key=lambda row: row[0]):
        n = len(r["runs"])
        rate = "—" if plan["images_per_s"] is None else f"{plan['images_per_s']:.1f}"
        # Runs re-planned in steps end within an epoch: their epochs are what they trained (the last partial).
        done = sorted({str(run.get("epochs_done")) for run in r["runs"] if run.get("epochs_done") is not None})
        seconds = [run["train_seconds"] for run in r["runs"] if run.get("train_seconds")]
        mean = sum(seconds) / len(seconds) if seconds else 0.0
        used = f"{mean / 60:.1f} min ({100 * mean / (60 * minutes):.0f}%)" if seconds else "—"
        lines.append(f"| {minutes:g} min | {', '.join(done) or plan['epochs']} | {rate} | {n} | {used} | "
                     f"{100 * r['val_mean']:.2f} ± {100 * r['val_std']:.2f}% | "
                     f"{100 * r['test_mean']:.2f} ± {100 * r['test_std']:.2f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    except RunError as error:
        # A stopped or unscorable seed is expected here (Ctrl-C, a budget too short): say what to do, no traceback.
        raise SystemExit(f"time_to_accuracy: {error}") from None


def run(argv: list[str] | None = None) -> None:
    """Parse the command line, train the missing seeds, write the budget table and print the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding cifar-10-batches-py")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time per run [60]")
    parser.add_argument("--seeds", type=seeds_arg, default=[0, 1],
                        help="seeds of the fast recipe; empty (--seeds '') to leave it out [0,1]")
    parser.add_argument("--paper-seeds", type=seeds_arg, default=[0],
                        help="seeds of the paper recipe; empty (--paper-seeds '') to leave it out [0]")
    parser.add_argument("--train-subset", type=int, default=None, help="train on this many images (quick runs)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="fast recipe: train this many whole epochs instead of planning steps to the budget")
    parser.add_argument("--resolutions", default=None, help="fast recipe: progressive resizing [the recipe's]")
    parser.add_argument("--calibration-steps", type=int, default=30, help="timed steps of the calibration [30]")
    parser.add_argument("--margin", type=float, default=MARGIN,
                        help=f"share of the budget the steps may fill [{MARGIN}]")
    parser.add_argument("--out", type=Path, default=Path("runs/time-to-accuracy"), help="parent folder of the runs")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not args.seeds and not args.paper_seeds:
        parser.error("give seeds for at least one recipe (--seeds, --paper-seeds)")
    common = {"train_subset": args.train_subset}
    fast_common = {**common, "resolutions": args.resolutions}
    limit = 60 * args.minutes
    fast = paper = None
    if args.seeds:
        out = args.out / f"fast-{args.minutes:g}min"
        budget = None
        if args.epochs:
            epochs = args.epochs
        else:  # the first plan; each run re-plans its steps as it goes
            plan = calibrate(args, fast_common, out)
            budget = Budget(limit, plan["compile_seconds"], plan["steps"])
            epochs = epochs_for_steps(plan["steps"], plan["train_images"], make_config("fast").batch_size)
        fast = run_seeds("fast", args.seeds, args.data_dir, out, {**fast_common, "epochs": epochs},
                         args.device, time_limit=limit, budget=budget)
        planned = f"{epochs} epochs" if budget is None else f"{budget.steps} steps planned, re-planned as it went"
        print(f"\nfast recipe, {planned}, {args.minutes:g} min budget:\n{seeds_markdown(fast)}")
        table = budget_table(args.out)
        (args.out / "budgets.md").write_text(table)
        print(f"fast recipe at every budget run so far ({args.out / 'budgets.md'}):\n{table}")
    if args.paper_seeds:
        paper = run_seeds("paper", args.paper_seeds, args.data_dir, args.out / f"paper-{args.minutes:g}min", common,
                          args.device, time_limit=limit)
        print(f"paper recipe, stopped at {args.minutes:g} min:\n{seeds_markdown(paper)}")
    if fast is not None:
        print(f"fast_test_accuracy: {100 * fast['test_mean']:.2f}")
    else:
        print(f"paper_test_accuracy: {100 * paper['test_mean']:.2f}")


if __name__ == "__main__":
    main()
