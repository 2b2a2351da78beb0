"""What a training run saves to continue: the contents of ``last.pt``, reading it back (falling back to the
checkpoint before it), and the config a resumed run continues with.

A resumed run keeps its recipe (:class:`~ghostmixnet.config.RecipeConfig`) and may change any compute
setting (:class:`~ghostmixnet.config.ComputeConfig`); of the recipe only ``epochs`` may grow, to run the
same recipe for longer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import COMPUTE_FIELDS, RECIPE_FIELDS, TrainConfig, config_of
from ..data.sources import name_list
from ..errors import CheckpointError, DataError, RunError
from ..files import atomic_open, entry_problem, read_regular
from ..model.checkpoint import load_checkpoint, load_weights, unwrap
from .loop import EpochTotals
from .parts import Training

FORMAT_VERSION = 1
LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"
LOCK = ".lock"
"""The run folder's lock file, held while a run or resume writes into it."""
RUN_LONGER = "epochs"
"""The one recipe field a resumed run may change: it continues the same recipe for more (or fewer) epochs."""


@dataclass
class RunState:
    """Where a run stands between two steps, besides the states of its model, optimizer, scheduler, scaler
    and weight average: together they are what ``last.pt`` holds, all a resumed run needs."""

    epoch: int = 0
    """Epochs finished."""
    step: int = 0
    """Steps done of the epoch in progress (0 at an epoch's end)."""
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    """One metrics row per finished epoch."""
    partial: EpochTotals = field(default_factory=EpochTotals)
    """The epoch in progress's running totals."""
    budget: dict[str, float] | None = None
    """A run re-planned to a time budget: its :class:`~ghostmixnet.train.replan.Budget` (a resumed run keeps it)."""


def training_checkpoint(t: Training, state: RunState, processes: int) -> dict[str, Any]:
    """The contents of ``last.pt`` for the parts ``t`` at ``state``, saved by a run of ``processes``."""
    return {"format": FORMAT_VERSION, "model": unwrap(t.model).state_dict(), "config": t.cfg.to_dict(),
            "epoch": state.epoch, "step": state.step, "partial": state.partial.to_dict(),
            "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict(), "best_acc": state.best_acc, "best_epoch": state.best_epoch,
            "history": state.history, "processes": processes, "budget": state.budget,
            **({"ema": t.ema.state_dict()} if t.ema is not None else {})}


def load_resume_checkpoint(out_dir: Path, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """The newest usable training checkpoint of a run: ``last.pt``, or the one before it if ``last.pt``
    is missing, truncated or corrupt (saying so)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise RunError(f"cannot resume: {out_dir} {entry_problem(out_dir) or 'is a file, not a run folder'}; name "
                       "the run folder (the one holding last.pt)")
    errors = []
    for name in (LAST, PREVIOUS):
        path = out_dir / name
        problem = entry_problem(path)  # missing, a folder, a FIFO, a dangling link...: never opened
        if problem is not None:
            errors.append(f"{path} {problem}")
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if "optimizer" not in ckpt or "epoch" not in ckpt:
            errors.append(f"{path} holds weights only, not the training state a resume needs")
            continue
        if name != LAST:
            log(f"warning: {errors[0]}; resuming from the previous checkpoint {path} instead")
        return ckpt, path
    raise RunError("cannot resume: " + "; ".join(errors))


def restore_training(t: Training, ckpt: dict[str, Any], path: Path, processes: int) -> RunState:
    """Load a training checkpoint into the parts ``t``; the run's state. A checkpoint saved within an epoch
    must be resumed by as many processes as saved it (their shards of the epoch differ otherwise)."""
    load_weights(t.model, ckpt["model"], path)
    built = [group["lr"] for group in t.optimizer.param_groups]
    t.optimizer.load_state_dict(ckpt["optimizer"])
    for group, rate in zip(t.optimizer.param_groups, built):
        # Keep the rate as the optimizer was built to hold it: in a device tensor where a captured step reads it
        # (step_graph.py), a number elsewhere, whichever kind the checkpoint saved.
        if isinstance(rate, torch.Tensor):
            group["lr"] = rate.fill_(float(group["lr"]))
        else:
            group["lr"] = float(group["lr"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:  # empty when the run computed in another precision than fp16 until now
        t.scaler.load_state_dict(ckpt["scaler"])
    if t.ema is not None:
        if "ema" not in ckpt:
            raise RunError(f"{path} holds no weight average although the config asks for one (ema_decay)")
        t.ema.load_state_dict(ckpt["ema"])
    state = RunState(ckpt["epoch"], ckpt.get("step", 0), ckpt["best_acc"], ckpt["best_epoch"], list(ckpt["history"]),
                     EpochTotals.from_dict(ckpt["partial"]) if "partial" in ckpt else EpochTotals(), ckpt.get("budget"))
    if state.step and ckpt.get("processes", 1) != processes:
        raise RunError(f"{path} was saved in the middle of an epoch by {ckpt.get('processes', 1)} process(es); "
                       f"resume it with that many (this run has {processes}), or from an epoch end")
    return state


def resume_config(out_dir: Path, overrides: dict[str, Any], recipe: str | None = None,
                  log: Callable[[str], None] = print, data_dir: Path | None = None) -> tuple[TrainConfig, Path]:
    """The config to continue the run in ``out_dir`` with, and the data folder: ``data_dir`` if given, else the
    one it used (:func:`recorded_data_dir`). The config is its own recipe (run for ``epochs`` if that is given)
    computed as the ``overrides`` of compute settings say; an override of any other recipe field is refused. A
    config.json edited by hand is reported (:func:`report_edited_config`)."""
    ckpt, path = load_resume_checkpoint(out_dir, log=lambda _: None)  # train() says which file it uses
    saved = config_of(ckpt, path)
    del ckpt
    report_edited_config(out_dir, saved, log)
    asked = {**overrides, **({"recipe": recipe} if recipe is not None else {})}
    check_resumable(asked, saved, out_dir)
    learned = dataclasses.replace(saved.recipe_config(), epochs=overrides.get(RUN_LONGER, saved.epochs))
    compute = dataclasses.replace(saved.compute_config(), **{k: v for k, v in overrides.items() if k in COMPUTE_FIELDS})
    return TrainConfig.of(learned, compute), data_dir or recorded_data_dir(out_dir)


def recorded_data_dir(out_dir: Path) -> Path:
    """The data folder a run used, from its run.json (written before the first step, so a run with a checkpoint
    has one); a run.json missing or unable to say is a :class:`RunError` naming it and the way round it."""
    path = out_dir / "run.json"
    fix = "pass --data-dir with the folder the run trained on"
    if not os.path.lexists(path):
        raise RunError(f"cannot resume: {path} is missing, so the data folder the run used is unknown; {fix}")
    try:
        record = json.loads(read_regular(path, "run.json"))
    except DataError as e:
        raise RunError(f"cannot resume: {e}; {fix}") from None
    except ValueError:
        raise RunError(f"cannot resume: {path} is not JSON; {fix}") from None
    data_dir = record.get("data_dir", "data") if isinstance(record, dict) else None
    if not isinstance(data_dir, str) or not data_dir:
        raise RunError(f"cannot resume: {path}: its 'data_dir' must be a folder path (text), not {data_dir!r}; {fix}")
    return Path(data_dir)


def report_edited_config(out_dir: Path, saved: TrainConfig, log: Callable[[str], None]) -> None:
    """A run folder's config.json that no longer matches the run's own record (the config in its checkpoint) is
    neither used silently nor overwritten silently: say which settings differ and that the run's own are kept
    (only they continue it exactly), and keep the edited file as ``config.edited.json`` before the run writes
    config.json again."""
    path = out_dir / "config.json"
    if not os.path.lexists(path):
        return
    ours = json.loads(json.dumps(saved.to_dict()))  # as JSON has it: tuples as lists
    try:
        raw = read_regular(path, "config.json")
    except DataError as e:
        log(f"{e}; the resumed run keeps its own settings (from its checkpoint) and writes config.json again")
        return
    try:
        edited = json.loads(raw)
    except ValueError:
        edited = None
    if edited == ours:
        return
    if isinstance(edited, dict):
        differ = sorted(k for k in set(edited) | set(ours) if edited.get(k, ...) != ours.get(k, ...))
        shown = ", ".join(f"{k} ({_shown(edited, k)} there, {_shown(ours, k)} in the run)" for k in differ[:6])
        what = f"differs from the run's own record in {shown}{' and more' if len(differ) > 6 else ''}"
    else:
        what = "is no longer a JSON object of settings"
    kept = out_dir / "config.edited.json"
    with atomic_open(kept, "wb") as f:  # byte for byte: what the person wrote, whatever its encoding
        f.write(raw)
    log(f"{path} was edited since the run wrote it: it {what}. The resumed run keeps its own settings (from its "
        f"checkpoint), the only ones that continue it exactly, and rewrites config.json; the edited file is kept "
        f"as {kept}. Change compute settings with flags (e.g. --batch-size), or start a new run with --out")


def _shown(config: dict[str, Any], key: str) -> str:
    return repr(config[key]) if key in config else "absent"


def check_resumable(asked: dict[str, Any], saved: TrainConfig, out_dir: Path) -> None:
    """Refuse to continue a run saved with config ``saved`` when ``asked`` (fields and values) changes what
    it learns."""
    changed = [k for k, v in asked.items() if k in RECIPE_FIELDS and k != RUN_LONGER and getattr(saved, k) != v]
    if changed:
        raise RunError(f"a resumed run keeps the recipe it started with; {out_dir} differs in "
                       f"{', '.join(f'{k} (was {getattr(saved, k)!r})' for k in changed)}; "
                       "drop those flags or start a new run with --out")


def check_same_data(saved: TrainConfig, now: TrainConfig, data_dir: Path) -> None:
    """Refuse to continue a run whose data has changed since it started: another class list, or other training
    images (their mean or std moved); it would resume with other labels or other inputs."""
    if saved.class_names != now.class_names:
        raise RunError(f"the data in {data_dir} has changed since the run started: its classes are now "
                       f"{name_list(now.class_names, 8)} ({now.num_classes}), were {name_list(saved.class_names, 8)} "
                       f"({saved.num_classes}); put the folder back as it was, or start a new run with --out")
    if saved.normalization != now.normalization:
        raise RunError(f"the training images in {data_dir} have changed since the run started (their mean and std "
                       "moved); put the folder back as it was, or start a new run with --out")
