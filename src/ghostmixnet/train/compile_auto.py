"""``--compile auto`` on a CPU: compile the model only where it saves time overall.

Compiling the model on a 2-core CPU takes minutes for each image size and then saves a share of every later
step. A run with ``compile="auto"`` on a CPU starts eager; once the first steps of an image size are timed, it
weighs the steps left at that size times what compiling saves a step against what compiling costs, both as
measured on this machine by an earlier run (kept in a small cache file) or, before any, estimated; it compiles
for that size only where the saving is larger, and says which and why. A run that compiled times its first
compiled steps and records the cost and the saving it measured, for the next run to weigh. Inductor's own
on-disk caches (on by default) make a second compile of the same shapes cheaper, and the next record says so.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import TrainConfig
from ..data.resolution import ResolutionSchedule
from ..errors import DataError
from ..files import read_regular, write_text_atomic
from .compile import compile_model
from .parts import Training

UNTIMED, TIMED = 2, 8
"""Steps of each size left untimed first (they warm up, or compile), then timed."""
PRIOR_COMPILE_SECONDS = 180.0
"""Compile cost assumed before any was measured here: each image size took 2-4 minutes on the 2-core CPU."""
PRIOR_SPEEDUP = 1.4
"""Step-time ratio, eager over compiled, assumed before any was measured here: the default training path was
2.9x the reference compiled and 2.05x without compiling (docs/performance.md, another CPU)."""


def cost_file() -> Path:
    """Where the compile costs measured on this machine are kept (``GHOSTMIXNET_CACHE`` or the user's cache)."""
    root = os.environ.get("GHOSTMIXNET_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(root) / "ghostmixnet" / "compile-costs.json"


def read_costs(path: Path) -> dict[str, dict[str, float]]:
    """The costs kept in ``path``: those entries that hold a finite cost and a positive speed-up (a damaged or
    foreign file costs only its measurements)."""
    try:  # read_regular: a FIFO or device put there is refused, not waited on
        costs = json.loads(read_regular(path, "compile-cost cache"))
    except (OSError, ValueError, DataError):
        return {}
    return {k: v for k, v in costs.items() if _valid(v)} if isinstance(costs, dict) else {}


def _valid(record: object) -> bool:
    try:
        return math.isfinite(float(record["compile_seconds"])) and float(record["speedup"]) > 0  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return False


def cost_key(cfg: TrainConfig, precision: str, size: int) -> str:
    """What a compile's cost depends on: the model and its input, the arithmetic, torch, the CPU, the threads."""
    return (f"{cfg.model} width {cfg.width} batch {cfg.batch_size} {size}px {precision} channels_last "
            f"{cfg.channels_last} fused_bn {cfg.fused_bn} depthwise {cfg.depthwise}; torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")


def should_compile(steps_left: int, eager_step: float, record: dict[str, float] | None) -> tuple[bool, str]:
    """Whether compiling for ``steps_left`` steps of ``eager_step`` seconds saves time, and the reckoning."""
    measured = record is not None
    cost = float(record["compile_seconds"]) if measured else PRIOR_COMPILE_SECONDS
    speedup = float(record["speedup"]) if measured else PRIOR_SPEEDUP
    saving = steps_left * eager_step * (1 - 1 / speedup)
    source = "as measured here before" if measured else "estimated: no compile measured on this machine yet"
    return saving > cost, (f"{steps_left:,} steps left x {eager_step:.2f} s a step x (1 - 1/{speedup:.2f}) = "
                           f"{saving:.0f} s saved, against {cost:.0f} s to compile ({source})")


class CompileChooser:
    """The after-step hook of a ``compile="auto"`` run on a CPU (:meth:`after_step`), one decision per image size."""

    def __init__(self, t: Training, log: Callable[[str], None], path: Path | None = None) -> None:
        self.t, self.log, self.path = t, log, path or cost_file()
        self.eager, self.compiled = t.train_model, None
        self.sizes = ResolutionSchedule.parse(t.cfg.resolutions)
        self.size, self.phase, self.times, self.eager_step = None, "eager", [], 0.0
        self.last: float | None = None  # the epoch's training seconds at the last step

    def steps_left_at(self, size: int, done: int) -> int:
        total = self.t.planned_steps()
        return sum(self.sizes.size_at(i, total) == size for i in range(done, total))

    def after_step(self, done: int, step: int, epoch_seconds: float) -> None:
        """Told after each step: ``done`` steps of the run in all, ``step`` of the epoch, the epoch's training
        seconds so far (validation excluded, so a step's time is the difference)."""
        previous, self.last = self.last, epoch_seconds
        interval = epoch_seconds if step == 1 else None if previous is None else epoch_seconds - previous
        size = self.sizes.size_at(done, self.t.planned_steps())  # the next step's size
        if size != self.size:  # a new size: time it eager, then decide
            self.size, self.phase, self.times = size, "eager", []
            self.t.train_model = self.eager
            return
        if self.phase == "done" or interval is None:
            return
        self.times.append(interval)
        if len(self.times) < UNTIMED + TIMED:
            return
        if self.phase == "eager":
            self.decide(done)
        else:
            self.record()
        self.times = []

    def decide(self, done: int) -> None:
        self.eager_step = statistics.median(self.times[UNTIMED:])
        record = read_costs(self.path).get(cost_key(self.t.cfg, self.t.compute.precision, self.size))
        pays, why = should_compile(self.steps_left_at(self.size, done), self.eager_step, record)
        self.log(f"compile auto, {self.size} px: {'compiling' if pays else 'not compiling'}: {why}")
        if pays:
            if self.compiled is None:
                self.compiled = compile_model(self.eager, self.t.cfg.compile_mode, self.t.compute.device)
            self.t.train_model, self.phase = self.compiled, "compiled"
        else:
            self.phase = "done"

    def record(self) -> None:
        """Keep the compile cost and saving measured on this machine (the first steps compiled)."""
        compiled_step = statistics.median(self.times[UNTIMED:])
        cost = max(sum(self.times[:UNTIMED]) - UNTIMED * compiled_step, 0.0)
        speedup = self.eager_step / compiled_step
        costs = read_costs(self.path)
        key = cost_key(self.t.cfg, self.t.compute.precision, self.size)
        costs[key] = {"compile_seconds": round(cost, 1), "speedup": round(speedup, 3)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(costs, indent=2) + "\n")
        except OSError:
            pass  # a read-only cache only costs the next run its measurement
        self.log(f"compile auto, {self.size} px: compiling took {cost:.0f} s; a step {compiled_step:.2f} s "
                 f"against {self.eager_step:.2f} s eager ({speedup:.2f}x), kept in {self.path}")
        self.phase = "done"
