"""One run's context and its stages: describe it, train its epochs until a rule stops them, validate, save, score.

:mod:`~ghostmixnet.train.run` sets a run up and acts on how it ended (:class:`~ghostmixnet.train.ending.Ending`);
everything in between is here, on the :class:`Run` every stage reads.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from ..config import TrainConfig
from ..data.loading import ResumableSampler
from ..data.resolution import ResolutionSchedule
from ..data.splits import Splits
from ..device import slow_precision_warning
from ..errors import NonFiniteLossError
from ..files import write_text_atomic
from ..infer.calibrate import Calibration, calibrate_on_split
from ..infer.evaluate import EvalResult, evaluate
from ..model.architectures import count_parameters
from ..model.checkpoint import load_checkpoint, load_weights, save_atomic, unwrap
from ..model.factory import build_model
from ..version import __version__
from .compile import resolve_compile_mode
from .compile_auto import CompileChooser
from .distributed import DistEnv
from .ending import Ending, Why
from .loop import EpochControl, EpochEnd, EpochTotals, train_one_epoch
from .metrics import plot_curves, write_metrics
from .options import Reporting, StopRules
from .parts import Training, epoch_batches
from .progress import Progress
from .replan import Budget, Replanner
from .resume import BEST, FORMAT_VERSION, LAST, PREVIOUS, RunState, training_checkpoint
from .runlog import RunLog, data_note, selection_note


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


FORECAST_STEPS = (3, 10)
"""A run's forecast leaves this invocation's first 3 steps untimed (they compile) and times the next 10."""
SHORTER_RUN = ("ghostmixnet train --recipe fast --time-budget 60", "91.3% test accuracy (2 seeds) in 60 "
               "training-minutes on a 2-core Xeon with AMX at 117 images/s (docs/performance.md); a slower CPU "
               "fits fewer epochs in the hour")
"""What to suggest where a run would take long, with the figure measured for it (README, docs/performance.md)."""
LONG_RUN_SECONDS = 4 * 3600.0
PLOT_EVERY_SECONDS = 60.0
"""The curves are redrawn after an epoch at most this often, and once more as the run ends, however it ends:
drawing them takes about 0.3 s, which a run of short epochs (on a GPU, a few seconds each) would otherwise pay
every epoch. metrics.csv is rewritten every epoch."""


def duration(seconds: float) -> str:
    """Seconds as a person says them: 40 s, 12 minutes, 3.5 hours."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"


def pace_line(run: Run, done: int, step_seconds: float) -> str:
    """The forecast after ``done`` steps of the run: this machine's pace, the run's remaining training time, and
    a shorter run where that is long."""
    left = max(run.t.planned_steps() - done, 0)
    seconds = left * step_seconds
    line = (f"pace: {step_seconds:.3g} s a step ({run.cfg.batch_size / step_seconds:.1f} images/s) on this machine; "
            f"the {left:,} steps left take about {duration(seconds)} of training (validation excluded)")
    if seconds > LONG_RUN_SECONDS and run.cfg.recipe != "fast":
        line += f"; for a shorter run, {SHORTER_RUN[0]} reached {SHORTER_RUN[1]}"
    return line


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


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
    sampler: ResumableSampler
    stops: StopRules
    report: Reporting
    plotted_at: float = dataclasses.field(default_factory=time.monotonic)
    """When the curves were last drawn (at first: when the run started)."""
    plotted_epochs: int = 0
    """How many epochs the curves drawn show."""

    @property
    def budget(self) -> Budget | None:
        return self.stops.budget

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
        """With a budget, the hook that re-plans the steps after each step (:class:`Replanner`), told the steps
        done in all and the epoch's training seconds; True where the planned steps end."""
        if self.budget is None:
            return None
        sizes = ResolutionSchedule.parse(self.cfg.resolutions)
        planner = Replanner(self.budget.seconds, sizes, self.budget.compile_seconds)

        def after_step(done: int, epoch_seconds: float) -> bool:
            seconds, total = self.trained_seconds() + epoch_seconds, self.t.planned_steps()
            planner.record(done, seconds, sizes.size_at(done - 1, total))
            if planner.due(done, total):
                planned = max(planner.plan(done, seconds), done)
                if planned != total:
                    self.t.replan(planned, done)
                    total = planned
            return done >= total
        return after_step

    def after_step(self) -> Callable[[int, float], bool]:
        """The hook :attr:`EpochControl.after_step` calls after each step: the pace forecast, the compile choice
        of ``--compile auto`` on a CPU, and with a budget the re-planner, whose answer (whether the planned steps
        end here) it returns."""
        replan, forecast = self.replanning(), self.forecast()
        chooser = CompileChooser(self.t, self.log) if self.t.compile_later else None
        before = self.done_steps() - self.state.step  # steps of the epochs before this one

        def after_step(step: int, epoch_seconds: float) -> bool:
            nonlocal before
            if step == 1:  # a new epoch
                before = self.done_steps()
            done = before + step
            forecast(done, step, epoch_seconds)
            if chooser is not None:
                chooser.after_step(done, step, epoch_seconds)
            return replan is not None and replan(done, epoch_seconds)
        return after_step

    def forecast(self) -> Callable[[int, int, float], None]:
        """A hook that, once this invocation's first steps on the CPU are timed (after those that compile), logs
        how long the rest of the run takes on this machine and, where that is long, a shorter command."""
        untimed, timed = FORECAST_STEPS
        seen: list[float] = []  # the epoch's training seconds after each step of this invocation
        over = self.env.device.type != "cpu" or self.budget is not None  # a budgeted run has said its length

        def after_step(done: int, step: int, epoch_seconds: float) -> None:
            nonlocal over
            if over:
                return
            seen.append(epoch_seconds)
            if len(seen) == untimed + timed + 1:
                over = True
                self.log(pace_line(self, done, (seen[-1] - seen[untimed]) / timed))
            elif step == self.t.steps_per_epoch:  # the epoch ended before its steps were timed: no forecast
                over = True
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
        compiled = (", compiled where it pays (--compile auto)" if t.compile_later else
                    f", compiled ({resolve_compile_mode(cfg.compile_mode, dev, env.distributed)})" if cfg.compile
                    else "")
        self.log(f"{cfg.model} (width {cfg.width}, {count_parameters(t.model):,} parameters), recipe {cfg.recipe}, "
                 f"{cfg.epochs} epochs, batch {cfg.batch_size}{procs}, {precision}{compiled}, on {dev}; "
                 f"{len(splits.train):,} training images{data_note(cfg)}; {selection_note(splits)}")
        warning = slow_precision_warning(dev, precision)
        if warning:
            self.log(warning)

    def train_epochs(self, loader: Any, control: EpochControl) -> Ending:
        """Train epoch after epoch (validating, saving, logging each) until the plan is done, this invocation's
        epochs are, or a stop rule ends the run; why it ended."""
        s, start, stop_after = self.state, self.state.epoch, self.stops.stop_after
        while s.epoch < self.epochs_planned() and (stop_after is None or s.epoch - start < stop_after):
            self.sampler.set_epoch(s.epoch, start=s.step * self.per_rank)
            # The classifier's, when fine-tuning; float: a captured step keeps it in a tensor.
            lr = max(float(group["lr"]) for group in self.t.optimizer.param_groups)
            ending = self.epoch_ending(self.train_epoch(loader, control), lr)
            if ending is not None:
                return ending
        return Ending(Why.STOP_AFTER if s.epoch < self.epochs_planned() else Why.DONE)

    def epoch_ending(self, end: EpochEnd, lr: float) -> Ending | None:
        """Close the epoch where it ended (unless it stopped within it) and say whether the run ends there."""
        if self.budget is not None and (end.planned_end or end.out_of_time):
            # A re-planned run ends here, its schedule done (or its time up): its final weights are validated,
            # not a checkpoint up to val_every epochs old.
            self.close_epoch(lr, final=True)
            return Ending(Why.BUDGET, out_of_time=end.out_of_time)
        if end.step < self.t.steps_per_epoch:
            return Ending(Why.TIME_LIMIT if end.out_of_time else Why.SIGNAL, within_epoch=True, step=end.step,
                          signal=end.signal)
        caller_stops = self.close_epoch(lr)
        if self.state.epoch >= self.cfg.epochs:  # the last epoch: finished whatever else was asked
            return None
        if end.signal:  # during the epoch's last step: the epoch-end checkpoint already holds it
            return Ending(Why.SIGNAL, signal=end.signal)
        if end.out_of_time:
            return Ending(Why.TIME_LIMIT)
        return Ending(Why.CALLER) if caller_stops else None

    def train_epoch(self, loader: Any, control: EpochControl) -> EpochEnd:
        """Train the rest of the current epoch (:func:`train_one_epoch`); the state's step follows it."""
        s, time_limit = self.state, self.stops.time_limit
        control.progress = Progress(control.steps_per_epoch, f"epoch {s.epoch + 1}/{self.epochs_planned()}", self.log,
                                    every=self.report.log_every, enabled=self.env.is_main)
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

    def close_epoch(self, lr: float, final: bool = False) -> bool:
        """After an epoch's last step (or, ``final``, the run's last, within an epoch): step a per-epoch schedule,
        record, validate (and keep the best), save, write metrics and plots, log. Whether the epoch-end hook
        asked to stop."""
        cfg, s, epoch_end = self.cfg, self.state, self.stops.epoch_end
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
            if time.monotonic() - self.plotted_at >= PLOT_EVERY_SECONDS:
                self.plot()
        name = self.val_name
        val_text = (f" {name}_loss {row['val_loss']:.4f} {name}_acc {100 * row['val_acc']:.2f}%{scores}"
                    f"{' (best)' if improved else ''}" if row["val_acc"] is not None else "")
        self.log(f"epoch {s.epoch}/{self.epochs_planned()} lr {lr:.3g} train_loss {row['train_loss']:.4f}{val_text} "
                 f"{row['images_per_s']:.1f} img/s {row['seconds']:.0f}s")
        return caller_stops

    def plot(self) -> None:
        """Draw loss.png and accuracy.png from the epochs so far (rank 0)."""
        history = self.state.history
        if self.env.is_main and history and len(history) != self.plotted_epochs:
            plot_curves(history, self.out_dir, "test set (selection)" if self.splits.val_is_test else "validation")
            self.plotted_at, self.plotted_epochs = time.monotonic(), len(history)

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
        calibration, _ = calibrate_on_split(model, val.images, val.labels, compute, self.cfg,
                                            origin=self.splits.record.get("origin", {}).get("val"))
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
        scored = build_model(cfg.model, cfg.num_classes, cfg.width, cfg.dropout, image_size=cfg.image_size)
        scored = scored.to(self.t.compute.device)
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
                      else f"{len(splits.val)} validation images ("
                           f"{splits.record.get('origin', {}).get('val', 'held out of the training set')})",
                      "test_from": splits.record.get("origin", {}).get("test", "the test set"), "tta": cfg.tta,
                      "tta_shift": cfg.tta_shift, "precision": "fp32",
                      "best_val_acc": s.best_acc, **test.summary(cfg.class_names), "seconds": seconds,
                      "calibration": calibration.to_dict() if calibration else None}
            write_text_atomic(self.out_dir / "test.json", json.dumps(result, indent=2) + "\n")
        log(f"test accuracy of best.pt (epoch {s.best_epoch}, {self.val_name}_acc {100 * s.best_acc:.2f}%): "
            f"{100 * test.accuracy:.2f}% on {len(splits.test):,} images"
            + (" [selected on the test set itself: optimistic]" if splits.val_is_test else ""))
        summary["test_acc"] = test.accuracy
        return summary
