"""A training run from start to finish: data, parts, the epochs, checkpoints, outputs.

Exact resume at any step rests on one rule: no random generator carries state from one step to the
next. Shuffling is a function of (seed, epoch); each image's augmentation of (seed, epoch, index or
step); mixing and dropout of (seed, epoch, step, rank). The state of a run between two steps is
therefore the model, optimizer, scheduler, gradient scaler and the position (epoch, step), which every
checkpoint holds; a resumed run replays the remaining steps exactly as an uninterrupted one.

Several processes (``torchrun``) share the one code path: each trains on its shard of every global
batch, DistributedDataParallel averages the gradients, metrics are summed across processes, and
rank 0 alone logs and writes.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from pathlib import Path

from ..config import TrainConfig, config_of
from ..data.loading import ResumableSampler
from ..data.sources import load_data
from ..data.splits import Splits
from ..model.checkpoint import ModelSpec, check_spec
from .context import Run, RunSummary
from .distill import prepare_distiller
from .distributed import DistEnv, init_distributed
from .ending import Ending, Why
from .folder import check_can_replan, check_can_start, run_folder, stop_requests
from .loop import EpochControl
from .memory import check_fits_memory
from .options import EpochHook, Reporting, StopRules, Where
from .parts import build_loader, build_training
from .replan import Budget
from .resume import LAST, RunState, check_resumable, check_same_data, load_resume_checkpoint, restore_training
from .runlog import RunLog, reading_progress

__all__ = ["EpochHook", "Reporting", "RunSummary", "StopRules", "Where", "train"]


def train(cfg: TrainConfig, data_dir: Path, out_dir: Path, *, device: str = "auto", resume: bool = False,
          download: bool = False, stop_after: int | None = None, log_every: int = 50, checkpoint_every: int = 0,
          echo: Callable[[str], None] | None = None, time_limit: float | None = None,
          epoch_end: EpochHook | None = None, skip_bad: bool = False, budget: Budget | None = None) -> RunSummary:
    """Train (or, with ``resume``, continue) the run in ``out_dir``; returns the run's summary.

    ``stop_after`` ends this invocation after that many epochs, leaving a resumable run;
    ``checkpoint_every`` also saves ``last.pt`` every that many steps within an epoch. SIGTERM or
    SIGINT saves after the current step and stops; the summary's ``signal`` then names it. ``time_limit``
    (seconds) stops the same way once the run's training time (validation excluded) reaches it, then
    reports the test accuracy of the best checkpoint so far (the summary's ``time_limit_hit`` is True).
    ``epoch_end`` is called on rank 0 after each epoch's validation with the epoch's metrics row and the
    trained weights (the module, unwrapped), e.g. to score extra data; its time is not training time. If it
    returns True the run ends there as at a time limit (one process only: ranks must stop together).
    ``skip_bad`` leaves out the images of a folder dataset that cannot be read, naming them, instead of stopping.
    ``budget`` (a one-cycle run, one process) re-plans the run's steps from its measured pace as it goes, so that it
    ends inside the budget with its schedule complete, and then validates its final weights (a resumed run keeps
    the budget it started with). Launched by torchrun, the processes of one run each call this with the same arguments.
    """
    report = Reporting(log_every, checkpoint_every, echo)
    stops = StopRules(stop_after, time_limit, budget, epoch_end)
    where = Where(data_dir, out_dir, device, resume, download, skip_bad)
    env = init_distributed(device)
    try:
        # Refuse what cannot work before touching the run folder, then hold it for the run.
        check_can_start(cfg, where.out_dir, env, resume)
        with stop_requests() as stop, run_folder(where.out_dir, env):
            return _train(cfg, where, stops, report, env, stop)
    finally:
        env.close()


def _train(cfg: TrainConfig, where: Where, stops: StopRules, report: Reporting, env: DistEnv,
           stop: dict[str, int]) -> RunSummary:
    # Set up: the data (its class list and normalisation joining the config), the run's log, the parts. Nothing
    # is written before the data is read, so that unreadable data leaves no run folder behind.
    log = RunLog(where.out_dir / "train.log" if env.is_main else None, report.echo)
    splits = _read_data(cfg, where, log, env.is_main)
    cfg = cfg.for_splits(splits)
    env.barrier()
    per_rank = cfg.batch_size // env.world_size
    sampler = ResumableSampler(len(splits.train), env.world_size, env.rank, cfg.seed)
    steps_per_epoch = -(-sampler.num_samples // per_rank)
    # Resume: last.pt (or the one before it) read and checked before any model is built from it.
    ckpt, path = load_resume_checkpoint(where.out_dir, log) if where.resume else (None, None)
    if ckpt is not None:
        _check_resumes(cfg, ckpt, path, where)
    check_fits_memory(cfg, per_rank, len(splits.train), env.device)  # before allocating: figures, not a crash
    t = build_training(cfg, env.device, steps_per_epoch, env.distributed, echo=log if ckpt is None else None)
    state = RunState()
    if ckpt is not None:
        state = restore_training(t, ckpt, path, env.world_size)
        at = f"step {state.step} of epoch {state.epoch + 1}" if state.step else f"epoch {state.epoch}"
        log(f"resuming {where.out_dir} after {at} (of {cfg.epochs} epochs) from {path.name}")
    budget = stops.budget or (Budget.from_dict(state.budget) if state.budget else None)
    if budget is not None:  # a resumed run keeps the budget it started with
        check_can_replan(cfg, env)
        state.budget = budget.to_dict()
        stops = dataclasses.replace(stops, budget=budget, time_limit=stops.time_limit or budget.seconds)
        if ckpt is None and budget.steps:
            t.replan(budget.steps, 0)
    run = Run(cfg, env, where.out_dir, splits, t, log, state, per_rank, sampler, stops, report)
    run.describe(where.data_dir)
    loader = build_loader(t, splits.train, sampler, per_rank)
    t.distiller = prepare_distiller(cfg, splits.train, getattr(loader, "images", None), t.compute, env.is_main,
                                    env.barrier, log)
    # On a GPU each read of the loss makes the host wait for the step; the CPU has nothing to wait for.
    control = EpochControl(steps_per_epoch, sync_every=1 if env.device.type == "cpu" else max(1, report.log_every),
                           checkpoint_every=report.checkpoint_every, save=run.save_at, stop=stop,
                           after_step=run.after_step())
    # Train until the plan is done or a rule stops it; then act on why, in one place.
    return conclude(run, run.train_epochs(loader, control))


def _read_data(cfg: TrainConfig, where: Where, log: RunLog, is_main: bool) -> Splits:
    """The run's data, read as the config says; what reading noted (files skipped, a cache it could not write)
    is shown as it comes and kept in the log once the data is read."""
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        log.show(line)

    splits = load_data(cfg.dataset, where.data_dir, **cfg.data_fields(), train_subset=cfg.train_subset,
                       download=where.download, skip_bad=where.skip_bad, echo=note,
                       progress=reading_progress(log.show, is_main))
    for line in notes:
        log.record(line)
    return splits


def _check_resumes(cfg: TrainConfig, ckpt: dict, path: Path, where: Where) -> None:
    """Refuse to resume from a checkpoint of other data, another config or another model."""
    check_same_data(config_of(ckpt, path), cfg, where.data_dir)
    check_resumable(cfg.to_dict(), config_of(ckpt, path), where.out_dir)  # whoever the caller: CLI, seeds, ablation
    check_spec(ckpt["model"], ModelSpec(cfg.model, cfg.num_classes, cfg.width, cfg.dropout, cfg.image_size), path)


def conclude(run: Run, end: Ending) -> RunSummary:
    """Act on how the run's epochs ended: save where it stopped within an epoch, say why it stopped, then finish
    it (score the best checkpoint on the test set) or leave it resumable."""
    s, out_dir, log = run.state, run.out_dir, run.log
    resume_with = f"continue with: ghostmixnet train --resume {out_dir}"
    if end.within_epoch:
        run.save_last()
    run.plot()  # the curves of every epoch, whatever the ending
    if end.why is Why.DONE:
        return run.finish(time_limit_hit=False)
    if end.why is Why.STOP_AFTER:
        log(f"stopped after epoch {s.epoch} of {run.epochs_planned()}; {resume_with}")
        return run.summary()
    if end.why is Why.SIGNAL:
        name = signal.Signals(end.signal).name
        log(f"{name} received: saved step {end.step} of epoch {s.epoch + 1} to {out_dir / LAST}; {resume_with}"
            if end.within_epoch else f"{name} received: stopped after epoch {s.epoch}; {resume_with}")
        return run.stopped(end.signal, step=end.step)
    if end.why is Why.BUDGET:
        budget, done = run.budget, run.done_steps()
        assert budget is not None
        log(f"time budget: {done} steps ({done / run.t.steps_per_epoch:.2f} epochs) in {run.trained_seconds():.0f} "
            f"of {budget.seconds:.0f} s of training"
            + ("; the time ran out before the plan's last step" if end.out_of_time else ""))
        return run.finish(time_limit_hit=end.out_of_time)
    if end.why is Why.TIME_LIMIT:
        limit = run.stops.time_limit
        log(f"time limit of {limit:.0f} s of training reached at step {end.step} of epoch {s.epoch + 1}"
            if end.within_epoch else f"time limit of {limit:.0f} s of training reached after epoch {s.epoch}")
    else:
        log(f"stopped after epoch {s.epoch} as the caller asked")
    return run.finish(time_limit_hit=True)
