"""Training throughput of a configuration, end to end: loading, augmentation, mixing, forward, backward, step.

Used by the benchmarks (``benchmarks/train_throughput.py`` compares the reference configuration with
the fast path, ``benchmarks/time_to_accuracy.py`` sizes a run to a time budget, ``benchmarks/gpu_check.py``
also asks where a step's time goes). It runs the trainer's epoch function on the parts the trainer builds,
for a given number of steps, without checkpoints or validation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import TrainConfig
from ..data.augment import resolve_augment_chunk
from ..data.cifar import ArraySet
from ..data.loading import ResumableSampler
from .distributed import DistEnv
from .loop import EpochControl, EpochTotals, train_one_epoch
from .parts import build_loader, build_training, epoch_batches

PHASES = ("data", "augment", "forward_backward", "optimizer")
"""The parts of a training step :class:`StepPhases` times: getting the batch, per-image augmentation, mixing
with forward and backward, and the optimizer step."""


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (GPU work runs behind the host: a clock read must wait for it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepPhases:
    """Where a training step's time goes: host time between marks and, on CUDA, device time between events
    recorded at the same marks (the GPU's own timeline: its idle gaps count towards the phase that follows).
    On the CPU the two are the same clock."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.host: dict[str, float] = defaultdict(float)
        self.pairs: list[tuple[str, Any, Any]] = []
        self.steps = 0

    def _event(self) -> Any:
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def begin(self) -> None:
        """Start a step."""
        self.steps += 1
        self._clock, self._last = time.perf_counter(), self._event()

    def mark(self, phase: str) -> None:
        """``phase`` ends here."""
        now, event = time.perf_counter(), self._event()
        self.host[phase] += now - self._clock
        self.pairs.append((phase, self._last, event))
        self._clock, self._last = now, event

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase: milliseconds per step on the host and on the device."""
        synchronize(self.device)
        device: dict[str, float] = defaultdict(float)
        for phase, start, end in self.pairs:
            device[phase] += start.elapsed_time(end) / 1000 if start is not None else 0.0
        if self.device.type != "cuda":
            device = self.host
        steps = max(self.steps, 1)
        return {p: {"host_ms": 1000 * self.host[p] / steps, "device_ms": 1000 * device[p] / steps}
                for p in PHASES if p in self.host}


@dataclass(frozen=True)
class Throughput:
    """One measurement."""

    images_per_s: float
    """Training images per second over the timed steps."""
    warmup_seconds: float
    """Wall time of the untimed first steps (with ``compile``, mostly compilation)."""
    precision: str
    """The precision ``auto`` resolved to."""
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    """With ``phase_steps``: milliseconds per step of each of :data:`PHASES`, on the host and the device."""
    loss: float = float("nan")
    """The mean training loss of the timed steps (read once, at their end): two compute paths of one recipe
    trained on the same batches from the same start give about the same."""


def training_throughput(cfg: TrainConfig, data: ArraySet, steps: int, warmup: int = 3,
                        device: torch.device | None = None, phase_steps: int = 0) -> Throughput:
    """Train ``cfg``'s model on ``data`` for ``warmup`` untimed then ``steps`` timed steps of ``cfg.batch_size``;
    then, with ``phase_steps``, that many more steps timed phase by phase (:class:`StepPhases`). The steps
    are the trainer's own (:func:`~ghostmixnet.train.loop.train_one_epoch` on the parts it builds), stopped
    after each count, with the loss read only at the end.

    With batched augmentation in chunks of several batches (:attr:`TrainConfig.augment_chunk`), each of the
    three counts is rounded up to whole chunks, so that every timed stretch carries its share of augmentation.
    ``data`` needs at least ``(warmup + steps + phase_steps) * batch_size`` images (after rounding); the partial
    batch is dropped.
    """
    device = device or torch.device("cpu")
    chunk = resolve_augment_chunk(cfg.augment_chunk, device) if cfg.augment_backend == "batched" else 1
    warmup, steps, phase_steps = (-(-count // chunk) * chunk for count in (warmup, steps, phase_steps))
    total = warmup + steps + phase_steps
    if len(data) < total * cfg.batch_size:
        raise ValueError(f"{total * cfg.batch_size} images are needed, {len(data)} given")
    t = build_training(cfg, device, steps_per_epoch=total)
    sampler = ResumableSampler(len(data), seed=cfg.seed)
    sampler.set_epoch(0)
    phases = StepPhases(device)  # marks count only after its first begin(), in the last phase_steps steps
    batches = epoch_batches(t, build_loader(t, data, sampler, cfg.batch_size), 0, 1,
                            mark=lambda phase: phases.mark(phase) if phases.steps else None)
    env, totals = DistEnv(0, 1, 0, device), EpochTotals()
    control = EpochControl(steps_per_epoch=len(data) // cfg.batch_size + 1, sync_every=10**9)

    def run(count: int, first: int, read: bool = False) -> None:
        control.max_steps = count
        # A planned end at the stretch's last step makes the loop read the stretch's losses there, once.
        control.after_step = (lambda step, _seconds: step == first + count) if read else None
        train_one_epoch(t, batches, 0, first, totals, control, env)
        synchronize(device)

    began = time.perf_counter()
    run(warmup, 0)
    start = time.perf_counter()
    run(steps, warmup, read=True)
    seconds = time.perf_counter() - start
    loss = totals.loss_sum / totals.images if totals.images else float("nan")
    if phase_steps:
        control.phases = phases
        run(phase_steps, warmup + steps)
    return Throughput(steps * cfg.batch_size / seconds, start - began, t.compute.precision,
                      phases.summary() if phase_steps else {}, loss)
