"""One recipe trained with several seeds: each run's figures and their mean and standard deviation.

A single run's accuracy moves by tenths of a point (more on short budgets) with the seed alone, so
claims about a recipe rest on several seeds. Runs are resumable folders under one parent: finished
seeds are read back, unfinished ones resumed.
"""

from __future__ import annotations

import json
import signal
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import make_config
from ..errors import RunError
from ..files import write_text_atomic
from .replan import Budget
from .resume import LAST
from .run import train


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_seeds(recipe: str, seeds: Sequence[int] | str, data_dir: Path, out_dir: Path, overrides: dict[str, Any],
              device: str = "auto", time_limit: float | None = None,
              echo: Callable[[str], None] | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """Train ``recipe`` once per seed into ``out_dir/seed-N``; write ``seeds.json`` and ``seeds.md``.

    ``time_limit`` (seconds of training per run) stops each run there and scores its best checkpoint; ``budget``
    re-plans each run's steps to it as the run goes (one-cycle recipes, :func:`~ghostmixnet.train.run.train`).
    Returns the summary written to ``seeds.json``. ``seeds`` may be given as text: ``"0,1"``.
    """
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
    if not seeds:
        raise ValueError("give at least one seed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        run_dir = out_dir / f"seed-{seed}"
        if not (run_dir / "test.json").is_file():
            (echo or print)(f"== {recipe}, seed {seed} -> {run_dir}")
            cfg = make_config(recipe, **{**overrides, "seed": seed})
            resume = (run_dir / LAST).is_file()
            summary = train(cfg, data_dir, run_dir, device=device, resume=resume, time_limit=time_limit, echo=echo,
                            budget=None if resume else budget)
            if summary.get("signal"):
                raise RunError(f"{run_dir} was stopped by {signal.Signals(summary['signal']).name} after "
                               f"{summary.get('epochs_done', 0)} epochs; run the same command again to resume it")
            if "test_acc" not in summary:
                raise RunError(f"{run_dir} ended without a test accuracy: no epoch was validated within the time "
                               "limit; give it more time or validate more often (--val-every)")
            write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        test = json.loads((run_dir / "test.json").read_text())
        done = run_dir / "summary.json"
        summary = json.loads(done.read_text()) if done.is_file() else {}
        runs.append({"seed": seed, "run_dir": str(run_dir), "val_acc": test["best_val_acc"],
                     "test_acc": test["accuracy"], "best_epoch": test["best_epoch"],
                     "epochs_done": summary.get("epochs_done"), "train_seconds": summary.get("train_seconds"),
                     "time_limit_hit": summary.get("time_limit_hit")})
    val_mean, val_std = mean_std([r["val_acc"] for r in runs])
    test_mean, test_std = mean_std([r["test_acc"] for r in runs])
    result = {"recipe": recipe, "seeds": list(seeds), "overrides": overrides, "time_limit": time_limit, "runs": runs,
              "val_mean": val_mean, "val_std": val_std, "test_mean": test_mean, "test_std": test_std}
    write_text_atomic(out_dir / "seeds.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out_dir / "seeds.md", seeds_markdown(result))
    return result


def seeds_markdown(result: dict[str, Any]) -> str:
    """Per-seed rows and a mean ± std row."""
    lines = ["| seed | epochs | training time | best epoch | val acc. | test acc. |", "|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        minutes = "" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f} min"
        lines.append(f"| {r['seed']} | {r['epochs_done'] or ''} | {minutes} | {r['best_epoch']} "
                     f"| {100 * r['val_acc']:.2f}% | {100 * r['test_acc']:.2f}% |")
    n = len(result["runs"])
    lines.append(f"| mean ± std ({n} seed{'s' if n > 1 else ''}) | | | | {100 * result['val_mean']:.2f} ± "
                 f"{100 * result['val_std']:.2f}% | {100 * result['test_mean']:.2f} ± "
                 f"{100 * result['test_std']:.2f}% |")
    return "\n".join(lines) + "\n"


def seeds_report(result: dict[str, Any], out_dir: Path) -> str:
    """What ``ghostmixnet seeds`` prints: the table, the files written and the test accuracy's mean and std."""
    n = len(result["runs"])
    return (seeds_markdown(result) + f"wrote {Path(out_dir) / 'seeds.md'} and {Path(out_dir) / 'seeds.json'}\n"
            f"test accuracy: {100 * result['test_mean']:.2f} ± {100 * result['test_std']:.2f}% over {n} seed(s)\n")
