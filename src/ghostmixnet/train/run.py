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
import errno
import json
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from ..checks import count, number
from ..config import TrainConfig, config_of
from ..data.loading import ResumableSampler
from ..data.resolution import ResolutionSchedule
from ..data.sources import load_data, name_list
from ..data.splits import Splits
from ..device import slow_precision_warning
from ..errors import NonFiniteLossError, RunError
from ..files import check_writable, exclusive_lock, write_text_atomic
from ..infer.calibrate import Calibration, calibrate_on_split
from ..infer.evaluate import EvalResult, evaluate
from ..model.architectures import count_parameters
from ..model.checkpoint import ModelSpec, check_spec, load_checkpoint, load_weights, save_atomic, unwrap
from ..model.factory import build_model
from ..version import __version__
from .compile import resolve_compile_mode
from .distributed import DistEnv, init_distributed
from .loop import EpochControl, EpochEnd, EpochTotals, train_one_epoch
from .memory import check_fits_memory
from .metrics import plot_curves, write_metrics
from .parts import Training, build_loader, build_training, epoch_batches
from .progress import Progress
from .replan import Budget, Replanner
from .resume import (
    BEST,
    FORMAT_VERSION,
    LAST,
    LOCK,
    PREVIOUS,
    RunState,
    check_resumable,
    check_same_data,
    load_resume_checkpoint,
    restore_training,
    training_checkpoint,
)

EpochHook = Callable[[dict[str, Any], torch.nn.Module], "bool | None"]


class RunSummary(TypedDict, total=False):
    """What :func:`train` returns, whatever the way the run ended: the first seven keys always; ``step`` and
    ``signal`` when a signal stopped it; ``time_limit_hit`` when it was finished (scored, if it validated an
    epoch: ``test_acc``)."""

    run_dir: str
    epochs_done: int
    epochs: int
    best_val_acc: float
    best_epoch: int
    val_is_test: bool
    train_seconds: float
    """Training time so far, validation excluded."""
    step: int
    signal: int
    time_limit_hit: bool
    test_acc: float


class RunLog:
    """Prints a line and appends it to the run's ``train.log`` (on rank 0; other ranks stay silent)."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.path is None:
            return
        self.show(line)
        self.record(line)

    def show(self, line: str) -> None:
        """Print a line without keeping it in the log (on rank 0)."""
        if self.path is None:
            return
        if self.echo is None:
            print(line, flush=True)  # flushed, so redirected logs of long runs stay current
        else:
            self.echo(line)

    def record(self, line: str) -> None:
        """Append a line to the log without printing it (on rank 0)."""
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def selection_note(splits: Splits) -> str:
    if splits.val_is_test:
        return ("selecting checkpoints on the TEST set (--val-size 0, the paper's habit): "
                "the test accuracy reported is optimistic, not an unbiased estimate")
    return f"selecting checkpoints on a {len(splits.val)}-image validation split of the training set"


def data_note(cfg: TrainConfig) -> str:
    if cfg.dataset == "cifar10":
        return ""
    return f" of {cfg.dataset} ({cfg.num_classes} classes: {name_list(cfg.class_names, 5)})"


@contextmanager
def stop_requests() -> Iterator[dict[str, int]]:
    """Turn SIGTERM and SIGINT into a request to stop after the current step (a second SIGINT
    interrupts at once). Yields a dict whose ``signal`` is set to the signal's number when one came."""
    request = {"signal": 0}
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield request
        return

    def handler(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and request["signal"]:
            raise KeyboardInterrupt
        request["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


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
    checkpoint_every, log_every = count(checkpoint_every, "checkpoint_every", 0), count(log_every, "log_every")
    stop_after = None if stop_after is None else count(stop_after, "stop_after")
    time_limit = None if time_limit is None else number(time_limit, "time_limit (seconds)", above=0)
    env = init_distributed(device)
    try:
        # Refuse what cannot work before touching the run folder, then hold it for the run.
        check_can_start(cfg, Path(out_dir), env, resume)
        with stop_requests() as stop, run_folder(Path(out_dir), env):
            return _train(cfg, Path(data_dir), Path(out_dir), env, resume, download, stop_after, log_every,
                          checkpoint_every, echo, stop, time_limit, epoch_end, skip_bad, budget)
    finally:
        env.close()


@contextmanager
def run_folder(out_dir: Path, env: DistEnv) -> Iterator[None]:
    """The run folder, held for the run: made if new (and removed again should the run end before writing
    into it: a missing data folder leaves no empty run folder behind) and locked by rank 0, so that a second
    run or resume into it is refused, naming the process that holds it."""
    made = env.is_main and not out_dir.exists()
    try:
        with ExitStack() as held:
            refusal = ""
            if env.is_main:
                try:
                    check_writable(out_dir, folder=True)
                    out_dir.mkdir(parents=True, exist_ok=True)
                    held.enter_context(exclusive_lock(out_dir / LOCK, f"{out_dir} is in use by another run or resume"))
                except OSError as e:
                    busy = e.errno == errno.EBUSY
                    refusal = f"{e.strerror or e}" + ("; wait for it to end, or choose another --out" if busy else "")
            # Every process stops if rank 0 was refused.
            if env.all_reduce_sum(torch.tensor([float(bool(refusal))], dtype=torch.float64))[0]:
                raise RunError(refusal or f"{out_dir} is in use by another run or resume")
            yield
    finally:
        if made and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def _train(cfg: TrainConfig, data_dir: Path, out_dir: Path, env: DistEnv, resume: bool, download: bool,
           stop_after: int | None, log_every: int, checkpoint_every: int, echo: Callable[[str], None] | None,
           stop: dict[str, int], time_limit: float | None, epoch_end: EpochHook | None = None,
           skip_bad: bool = False, budget: Budget | None = None) -> RunSummary:
    # Set up: the data (its class list and normalisation joining the config), the run's log, the parts. Nothing
    # is written before the data is read, so that unreadable data leaves no run folder behind.
    log, notes = RunLog(out_dir / "train.log" if env.is_main else None, echo), []

    def note(line: str) -> None:
        notes.append(line)
        log.show(line)

    splits = load_data(cfg.dataset, data_dir, **cfg.data_fields(), train_subset=cfg.train_subset, download=download,
                       skip_bad=skip_bad, echo=note, progress=reading_progress(log.show, env.is_main))
    cfg = cfg.for_splits(splits)
    for line in notes:  # what reading said (files skipped, a cache it could not write), kept in the log
        log.record(line)
    env.barrier()
    per_rank = cfg.batch_size // env.world_size
    sampler = ResumableSampler(len(splits.train), env.world_size, env.rank, cfg.seed)
    steps_per_epoch = -(-sampler.num_samples // per_rank)
    # Resume: last.pt (or the one before it) read and checked before any model is built from it.
    ckpt, path = load_resume_checkpoint(out_dir, log) if resume else (None, None)
    if ckpt is not None:
        check_same_data(config_of(ckpt, path), cfg, data_dir)
        check_resumable(cfg.to_dict(), config_of(ckpt, path), out_dir)  # whoever the caller: CLI, seeds, ablation
        check_spec(ckpt["model"], ModelSpec(cfg.model, cfg.num_classes, cfg.width, cfg.dropout), path)
    check_fits_memory(cfg, per_rank, len(splits.train), env.device)  # before allocating: figures, not a crash
    t = build_training(cfg, env.device, steps_per_epoch, env.distributed, echo=log if ckpt is None else None)
    state = RunState()
    if ckpt is not None:
        state = restore_training(t, ckpt, path, env.world_size)
        where = f"step {state.step} of epoch {state.epoch + 1}" if state.step else f"epoch {state.epoch}"
        log(f"resuming {out_dir} after {where} (of {cfg.epochs} epochs) from {path.name}")
    budget = budget or (Budget.from_dict(state.budget) if state.budget else None)
    if budget is not None:
        check_can_replan(cfg, env)
        state.budget, time_limit = budget.to_dict(), time_limit or budget.seconds
        if ckpt is None and budget.steps:
            t.replan(budget.steps, 0)
    run = Run(cfg, env, out_dir, splits, t, log, state, per_rank, budget)
    run.describe(data_dir)
    loader = build_loader(t, splits.train, sampler, per_rank)
    # On a GPU each read of the loss makes the host wait for the step; the CPU has nothing to wait for.
    control = EpochControl(steps_per_epoch, sync_every=1 if env.device.type == "cpu" else max(1, log_every),
                           checkpoint_every=checkpoint_every, save=run.save_at, stop=stop, after_step=run.replanning())
    start_epoch = state.epoch
    # For each epoch: train, validate, save, log; stop early when asked to or out of time.
    while state.epoch < run.epochs_planned() and (stop_after is None or state.epoch - start_epoch < stop_after):
        sampler.set_epoch(state.epoch, start=state.step * per_rank)
        lr = max(group["lr"] for group in t.optimizer.param_groups)  # the classifier's, when fine-tuning
        end = run.train_epoch(loader, control, time_limit, log_every)
        if budget is not None and (end.planned_end or end.out_of_time):
            # A re-planned run ends here, its schedule done (or its time up): its final weights are validated,
            # not a checkpoint up to val_every epochs old.
            run.close_epoch(lr, epoch_end, final=True)
            log(f"time budget: {run.done_steps()} steps ({run.done_steps() / steps_per_epoch:.2f} epochs) in "
                f"{run.trained_seconds():.0f} of {budget.seconds:.0f} s of training"
                + ("; the time ran out before the plan's last step" if end.out_of_time else ""))
            return run.finish(time_limit_hit=end.out_of_time)
        if end.step < steps_per_epoch:  # stopped within the epoch
            run.save_last()
            if end.out_of_time:
                log(f"time limit of {time_limit:.0f} s of training reached at step {end.step} of epoch "
                    f"{state.epoch + 1}")
                return run.finish(time_limit_hit=True)
            log(f"{signal.Signals(end.signal).name} received: saved step {end.step} of epoch {state.epoch + 1} to "
                f"{out_dir / LAST}; continue with: ghostmixnet train --resume {out_dir}")
            return run.stopped(end.signal, step=end.step)
        caller_stops = run.close_epoch(lr, epoch_end)
        if end.signal and state.epoch < cfg.epochs:
            # A signal during the epoch's last step: the epoch-end checkpoint already holds it.
            log(f"{signal.Signals(end.signal).name} received: stopped after epoch {state.epoch}; "
                f"continue with: ghostmixnet train --resume {out_dir}")
            return run.stopped(end.signal, step=0)
        if end.out_of_time and state.epoch < cfg.epochs:
            log(f"time limit of {time_limit:.0f} s of training reached after epoch {state.epoch}")
            return run.finish(time_limit_hit=True)
        if caller_stops and state.epoch < cfg.epochs:
            log(f"stopped after epoch {state.epoch} as the caller asked")
            return run.finish(time_limit_hit=True)
    # Finish once: score the best checkpoint on the test set, or say how to continue.
    if state.epoch < run.epochs_planned():
        log(f"stopped after epoch {state.epoch} of {run.epochs_planned()}; continue with: ghostmixnet train --resume "
            f"{out_dir}")
        return run.summary()
    return run.finish(time_limit_hit=False)


def reading_progress(log: Callable[[str], None], enabled: bool) -> Callable[[str], Callable[[int, int], None]]:
    """Progress displays for decoding a folder's images (the first read of a folder; later ones hit its cache)."""
    def start(what: str) -> Callable[[int, int], None]:
        bars: list[Progress] = []

        def update(done: int, total: int) -> None:
            if not bars:
                bars.append(Progress(total, f"reading {what}:", log, every=max(1, total // 10), enabled=enabled,
                                     unit="image"))
            bars[0].update(done)
            if done == total:
                bars[0].close()
        return update
    return start


def check_can_start(cfg: TrainConfig, out_dir: Path, env: DistEnv, resume: bool) -> None:
    """Refuse a run that cannot start: nothing to resume, a run already there, or a setup that cannot work."""
    if resume:
        if not (out_dir / LAST).is_file() and not (out_dir / PREVIOUS).is_file():
            raise RunError(f"cannot resume: {out_dir / LAST} does not exist")
    elif (out_dir / LAST).exists() or (out_dir / PREVIOUS).exists():
        raise RunError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    elif out_dir.is_dir() and any(p.name != LOCK for p in out_dir.iterdir()):
        # A new run never writes into a folder with other files: it would replace or mix with them.
        found = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
        what = ("a run that never saved a checkpoint" if (out_dir / "run.json").exists()
                else "files that are not a ghostmixnet run")
        raise RunError(f"{out_dir} is not empty: it holds {what} ({', '.join(found[:5])}"
                       f"{', ...' if len(found) > 5 else ''}); a new run needs an empty or new folder: choose "
                       "another --out (or delete what is there)")
    elif out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file, not a folder; choose a folder for the run")
    if cfg.sync_bn and env.distributed and env.device.type == "cpu":
        raise RunError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm does not run on the CPU; drop the flag "
                       "(each process then normalizes over its own share of the batch)")
    if cfg.batch_size % env.world_size:
        raise RunError(f"--batch-size {cfg.batch_size} is the global batch and must divide evenly among the "
                       f"{env.world_size} processes; use a multiple of {env.world_size}")


def check_can_replan(cfg: TrainConfig, env: DistEnv) -> None:
    """Refuse a time budget re-planned in steps where it cannot work: another schedule, or several processes
    (each would time itself and plan another length)."""
    if cfg.schedule != "onecycle":
        raise RunError(f"re-planning to a time budget stretches a one-cycle schedule; the {cfg.recipe} recipe's "
                       f"{cfg.schedule!r} schedule is not one: use --time-limit to stop it at a time instead")
    if env.distributed:
        raise RunError("a time budget times one process; under torchrun give --epochs")


@dataclass
class Run:
    """One run's context, read by every stage of :func:`_train`: its config, processes, folder, data,
    parts, log and state (the state changes as the run goes; the rest does not)."""

    cfg: TrainConfig
    env: DistEnv
    out_dir: Path
    splits: Splits
    t: Training
    log: RunLog
    state: RunState
    per_rank: int
    budget: Budget | None = None

    @property
    def val_name(self) -> str:
        return "test-as-val" if self.splits.val_is_test else "val"

    def trained_seconds(self) -> float:
        """Training time of the finished epochs."""
        return sum(row["seconds"] for row in self.state.history)

    def epochs_planned(self) -> int:
        """The epochs the run trains: the config's, or as many as the re-planned steps reach (the last partial)."""
        if self.budget is None:
            return self.cfg.epochs
        return -(-self.t.planned_steps() // self.t.steps_per_epoch)

    def done_steps(self) -> int:
        """Steps trained in all (a re-planned run's last epoch may be partial)."""
        return sum(int(row.get("steps") or self.t.steps_per_epoch) for row in self.state.history) + self.state.step

    def replanning(self) -> Callable[[int, float], bool] | None:
        """With a budget, the hook that re-plans the steps after each step (:class:`Replanner`), for
        :attr:`EpochControl.after_step`; True where the planned steps end."""
        if self.budget is None:
            return None
        sizes = ResolutionSchedule.parse(self.cfg.resolutions)
        planner = Replanner(self.budget.seconds, sizes, self.budget.compile_seconds)

        def after_step(step: int, epoch_seconds: float) -> bool:
            done = self.done_steps() - self.state.step + step
            seconds, total = self.trained_seconds() + epoch_seconds, self.t.planned_steps()
            planner.record(done, seconds, sizes.size_at(done - 1, total))
            if planner.due(done, total):
                planned = max(planner.plan(done, seconds), done)
                if planned != total:
                    self.t.replan(planned, done)
                    total = planned
            return done >= total
        return after_step

    def describe(self, data_dir: Path) -> None:
        """Write config.json and run.json (rank 0) and log what is about to run."""
        cfg, env, t, splits = self.cfg, self.env, self.t, self.splits
        dev, precision = t.compute.device, t.compute.precision
        if env.is_main:
            cfg.save(self.out_dir / "config.json")
            write_text_atomic(self.out_dir / "run.json", json.dumps({
                "ghostmixnet": __version__, "torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "device": str(dev), "processes": env.world_size, "threads": torch.get_num_threads(),
                "data_dir": str(Path(data_dir).resolve()), "train_images": len(splits.train),
                "val_images": len(splits.val), "val_is_test": splits.val_is_test,
                "parameters": count_parameters(t.model), "data": splits.record}, indent=2) + "\n")
        procs = f" x {env.world_size} processes ({self.per_rank} each)" if env.distributed else ""
        compiled = (f", compiled ({resolve_compile_mode(cfg.compile_mode, dev, env.distributed)})" if cfg.compile
                    else "")
        self.log(f"{cfg.model} (width {cfg.width}, {count_parameters(t.model):,} parameters), recipe {cfg.recipe}, "
                 f"{cfg.epochs} epochs, batch {cfg.batch_size}{procs}, {precision}{compiled}, on {dev}; "
                 f"{len(splits.train):,} training images{data_note(cfg)}; {selection_note(splits)}")
        warning = slow_precision_warning(dev, precision)
        if warning:
            self.log(warning)

    def train_epoch(self, loader: Any, control: EpochControl, time_limit: float | None, log_every: int) -> EpochEnd:
        """Train the rest of the current epoch (:func:`train_one_epoch`); the state's step follows it."""
        s = self.state
        control.progress = Progress(control.steps_per_epoch, f"epoch {s.epoch + 1}/{self.epochs_planned()}", self.log,
                                    every=log_every, enabled=self.env.is_main)
        control.seconds_left = None if time_limit is None else time_limit - self.trained_seconds()
        batches = epoch_batches(self.t, loader, s.epoch, s.step + 1, self.env.rank)
        try:
            end = train_one_epoch(self.t, batches, s.epoch, s.step, s.partial, control, self.env)
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e} and {self.out_dir / LAST} keeps the last good state. Lower --lr, use "
                                     "--precision fp32, or resume to retry") from None
        finally:
            control.progress.close()
        s.step = end.step
        return end

    def save_at(self, step: int) -> None:
        """Save ``last.pt`` after ``step`` of the current epoch."""
        self.state.step = step
        self.save_last()

    def save_last(self) -> None:
        """Save the training state to ``last.pt`` (the one before it kept as ``last.prev.pt``), on rank 0."""
        if not self.env.is_main:
            return
        if not _all_finite(self.t.model):  # never let a poisoned checkpoint replace a good one
            raise NonFiniteLossError(f"the weights hold NaN or infinite values at epoch {self.state.epoch + 1} step "
                                     f"{self.state.step}; nothing was saved, {self.out_dir / LAST} is the last good "
                                     "checkpoint")
        save_atomic(training_checkpoint(self.t, self.state, self.env.world_size), self.out_dir / LAST,
                    keep_previous=self.out_dir / PREVIOUS)

    def close_epoch(self, lr: float, epoch_end: EpochHook | None, final: bool = False) -> bool:
        """After an epoch's last step (or, ``final``, the run's last, within an epoch): step a per-epoch schedule,
        record, validate (and keep the best), save, write metrics and plots, log. Whether ``epoch_end`` asked
        to stop."""
        cfg, s = self.cfg, self.state
        if not self.t.per_step_schedule:
            self.t.scheduler.step()
        steps = s.step
        s.epoch, s.step = s.epoch + 1, 0
        stats, s.partial = s.partial, EpochTotals()
        row = {"epoch": s.epoch, "steps": steps, "val_split": "test" if self.splits.val_is_test else "val", "lr": lr,
               "train_loss": stats.loss_sum / max(stats.images, 1), "val_loss": None, "val_acc": None,
               "weights": None, "images_per_s": stats.images / max(stats.seconds, 1e-9), "seconds": stats.seconds}
        s.history.append(row)
        improved, scores = False, ""
        if s.epoch % cfg.val_every == 0 or s.epoch == cfg.epochs or final:
            improved, scores = self.validate(row)
        caller_stops = self.env.is_main and epoch_end is not None and bool(epoch_end(row, unwrap(self.t.model)))
        if self.env.is_main:
            self.save_last()
            write_metrics(self.out_dir / "metrics.csv", s.history)
            plot_curves(s.history, self.out_dir, "test set (selection)" if self.splits.val_is_test else "validation")
        name = self.val_name
        val_text = (f" {name}_loss {row['val_loss']:.4f} {name}_acc {100 * row['val_acc']:.2f}%{scores}"
                    f"{' (best)' if improved else ''}" if row["val_acc"] is not None else "")
        self.log(f"epoch {s.epoch}/{self.epochs_planned()} lr {lr:.3g} train_loss {row['train_loss']:.4f}{val_text} "
                 f"{row['images_per_s']:.1f} img/s {row['seconds']:.0f}s")
        return caller_stops

    def candidates(self) -> dict[str, torch.nn.Module]:
        """The weights validation chooses among: the trained ones and, if kept, their moving average."""
        return {"trained": unwrap(self.t.model), **({"average": self.t.ema.module} if self.t.ema is not None else {})}

    def score(self, module: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
              precision: str | None = None) -> EvalResult:
        """``module`` on a labelled set, shared among the processes (in the training precision by default)."""
        self.env.broadcast_state(module)  # every process evaluates with rank 0's BatchNorm statistics
        compute = dataclasses.replace(self.t.compute, precision=precision or self.t.compute.precision)
        return evaluate(module, images, labels, compute, tta=self.cfg.tta, shard=self.env,
                        tta_shift=self.cfg.tta_shift, normalization=self.cfg.normalization)

    def validate(self, row: dict[str, Any]) -> tuple[bool, str]:
        """Score every candidate on the validation split into ``row``; save the best one as ``best.pt`` if it
        beats the best so far. Whether it did, and each candidate's score when there are several."""
        s, splits = self.state, self.splits
        results = {name: self.score(module, splits.val.images, splits.val.labels)
                   for name, module in self.candidates().items()}
        name = max(results, key=lambda k: results[k].accuracy)  # ties keep the trained weights
        val = results[name]
        scores = (" (" + ", ".join(f"{k} {100 * r.accuracy:.2f}%" for k, r in results.items()) + ")"
                  if len(results) > 1 else "")
        row.update(val_loss=val.loss, val_acc=val.accuracy, weights=name)
        if val.accuracy <= s.best_acc:
            return False, scores
        s.best_acc, s.best_epoch = val.accuracy, s.epoch
        if self.env.is_main:
            save_atomic({"format": FORMAT_VERSION, "model": self.candidates()[name].state_dict(),
                         "config": self.cfg.to_dict(), "epoch": s.epoch, "weights": name, "val_acc": val.accuracy,
                         "val_is_test": splits.val_is_test}, self.out_dir / BEST)
        return True, scores

    def calibrate(self, model: torch.nn.Module, best: dict[str, Any]) -> Calibration:
        """Fit the best weights' temperature and "not sure" threshold on the validation split (with the
        run's test-time views, as predictions are made) and add them to ``best.pt``; on rank 0 alone."""
        compute = dataclasses.replace(self.t.compute, precision="fp32")
        val = self.splits.val
        calibration, _ = calibrate_on_split(model, val.images, val.labels, compute, self.cfg)
        save_atomic({**best, "calibration": calibration.to_dict()}, self.out_dir / BEST)
        self.log(f"calibrated best.pt on the validation split: temperature {calibration.temperature:.3f}; "
                 f"'not sure' below an energy score of {calibration.threshold:.3f} "
                 f"({100 * calibration.keep:.0f}% of validation images are above it)")
        return calibration

    def summary(self, **outcome: Any) -> RunSummary:
        """The run's summary as it stands, with the keys of how it ended (``outcome``)."""
        s = self.state
        return RunSummary(run_dir=str(self.out_dir), epochs_done=s.epoch, epochs=self.cfg.epochs,
                          best_val_acc=s.best_acc, best_epoch=s.best_epoch, val_is_test=self.splits.val_is_test,
                          train_seconds=self.trained_seconds() + s.partial.seconds, **outcome)

    def stopped(self, signum: int, step: int) -> RunSummary:
        """The summary of a run stopped by a signal, resumable."""
        return self.summary(step=step, signal=signum)

    def finish(self, time_limit_hit: bool) -> RunSummary:
        """Score the best checkpoint on the test set once; the run's summary."""
        cfg, s, splits, log = self.cfg, self.state, self.splits, self.log
        summary = self.summary(time_limit_hit=time_limit_hit)
        if s.best_epoch == 0:
            log("no validated checkpoint yet, so no test accuracy")
            return summary
        scored = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout).to(self.t.compute.device)
        if self.env.is_main:
            best = load_checkpoint(self.out_dir / BEST)
            load_weights(scored, best["model"], self.out_dir / BEST)
        t0 = time.perf_counter()
        # In fp32 whatever the training precision, as `ghostmixnet eval` scores: one checkpoint, one figure.
        test = self.score(scored, splits.test.images, splits.test.labels, "fp32")  # other ranks get rank 0's
        seconds = time.perf_counter() - t0
        if self.env.is_main:
            calibration = None if splits.val_is_test else self.calibrate(scored, best)
            result = {"split": "test", "images": len(splits.test), "checkpoint": BEST, "best_epoch": s.best_epoch,
                      "selected_on": "test set (optimistic: --val-size 0)" if splits.val_is_test
                      else f"validation split ({len(splits.val)} training images)", "tta": cfg.tta,
                      "tta_shift": cfg.tta_shift, "precision": "fp32",
                      "best_val_acc": s.best_acc, **test.summary(cfg.class_names), "seconds": seconds,
                      "calibration": calibration.to_dict() if calibration else None}
            write_text_atomic(self.out_dir / "test.json", json.dumps(result, indent=2) + "\n")
        log(f"test accuracy of best.pt (epoch {s.best_epoch}, {self.val_name}_acc {100 * s.best_acc:.2f}%): "
            f"{100 * test.accuracy:.2f}% on {len(splits.test):,} images"
            + (" [selected on the test set itself: optimistic]" if splits.val_is_test else ""))
        summary["test_acc"] = test.accuracy
        return summary
