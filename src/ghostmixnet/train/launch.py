"""A run as the command line asks for it: a new run of a recipe with overrides (sized to a time budget if
asked), or a stopped run continued in place."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checks import number
from ..config import TrainConfig, make_config
from .budget import budget_config
from .replan import Budget
from .resume import resume_config
from .run import RunSummary, train


def launch(recipe: str | None, overrides: dict[str, Any], *, data_dir: Path | None = None, out: Path | None = None,
           resume: Path | None = None, device: str = "auto", download: bool = False, stop_after: int | None = None,
           log_every: int = 50, checkpoint_every: int = 0, time_limit: float | None = None,
           time_budget: float | None = None, echo: Callable[[str], None] = print, skip_bad: bool = False) -> RunSummary:
    """Train ``recipe`` (default ``paper``) with the config ``overrides`` into ``out`` (default
    ``runs/MODEL-RECIPE-TIME``) on the data in ``data_dir`` (default ``data``; which data the config's
    ``dataset`` says), or continue the run in ``resume`` with the data it used. ``skip_bad`` leaves a folder's
    unreadable images out, naming them. ``time_limit`` and ``time_budget`` are minutes: the first stops the run,
    the second also sizes a new one (:func:`~ghostmixnet.train.budget.budget_config`)."""
    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise ValueError(f"--resume continues the run in {resume} in place; --out {out} does not apply: "
                         "drop --out (copy the run folder first to continue a copy)")
    if resume is not None:
        cfg, data_dir = resume_config(Path(resume), overrides, recipe, log=echo, data_dir=data_dir)
        out = resume
    else:
        cfg = make_config(recipe or "paper", **overrides)
        data_dir = data_dir or Path("data")
        out = out or Path("runs") / f"{cfg.model}-{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    budget = None
    if time_budget is not None:
        cfg, budget = _sized(cfg, overrides, resume is not None, data_dir, time_budget, device, download, echo,
                             skip_bad)
        time_limit = time_limit or time_budget
    summary = train(cfg, data_dir, out, device=device, resume=resume is not None, download=download,
                    stop_after=stop_after, log_every=log_every, checkpoint_every=checkpoint_every,
                    time_limit=None if time_limit is None else 60 * time_limit, skip_bad=skip_bad, budget=budget)
    if not summary.get("signal") and os.environ.get("RANK", "0") == "0":
        echo(f"run folder: {summary['run_dir']}")
    return summary


def _sized(cfg: TrainConfig, overrides: dict[str, Any], resume: bool, data_dir: Path, minutes: float, device: str,
           download: bool, echo: Callable[[str], None], skip_bad: bool = False) -> tuple[TrainConfig, Budget | None]:
    """``cfg`` with the epochs that fit ``minutes`` of training on this machine, and the budget a one-cycle run
    re-plans its steps to as it goes (:func:`~ghostmixnet.train.budget.budget_config`)."""
    if resume:
        raise ValueError("--time-budget sizes a new run; a resumed run keeps its plan (drop --time-budget)")
    if "epochs" in overrides:
        raise ValueError("--time-budget chooses the number of epochs; give --epochs or --time-budget, not both")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--time-budget times one process; under torchrun give --epochs")
    number(minutes, "--time-budget (minutes)", above=0)
    cfg, plan, budget = budget_config(cfg, data_dir, minutes, device, download, skip_bad=skip_bad)
    echo(f"time budget: {plan.describe()}")
    return cfg, budget
