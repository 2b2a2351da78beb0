"""Progressive resizing: the image size of each training step, as a function of how far the run has gone.

Early steps of a short schedule learn coarse features, which smaller images teach at a fraction of the
cost (a 16-pixel image costs a quarter of a 32-pixel one's arithmetic). A schedule is written
``"16:0.25,24:0.5"``: 16 pixels for the first quarter of the run's steps, 24 until half-way, the full size
after. The size of a step is a pure function of (step, planned steps), so a resumed run sees the same
sizes as an uninterrupted one. Evaluation always runs at the full size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FULL_SIZE = 32
"""The training images' own size (CIFAR's; folder datasets are resized to it when read)."""


@dataclass(frozen=True)
class ResolutionSchedule:
    """Image sizes by share of the run: ``stages[i] = (size, until)`` trains at ``size`` pixels while the
    share of steps done is below ``until``; past the last stage, at :data:`FULL_SIZE`."""

    stages: tuple[tuple[int, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ResolutionSchedule:
        """``"16:0.25,24:0.5"`` -> stages ((16, 0.25), (24, 0.5)); ``""`` is no schedule (always full size).
        Raises ValueError naming the problem."""
        stages = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            size, sep, until = part.partition(":")
            try:
                stages.append((int(size), float(until)))
            except ValueError:
                raise ValueError(f"resolution stage {part!r} is not SIZE:SHARE (e.g. 16:0.25)") from None
            if not sep:
                raise ValueError(f"resolution stage {part!r} is not SIZE:SHARE (e.g. 16:0.25)")
        schedule = cls(tuple(stages))
        problems = schedule.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return schedule

    def problems(self) -> list[str]:
        """What is wrong with the stages (empty when nothing is)."""
        problems = []
        for size, until in self.stages:
            if not 8 <= size < FULL_SIZE:
                problems.append(f"a resolution stage's size must be in [8, {FULL_SIZE}) pixels, got {size}")
            if not 0.0 < until < 1.0:
                problems.append(f"a resolution stage ends at a share of the steps in (0, 1), got {until}")
        ends = [until for _, until in self.stages]
        if ends != sorted(set(ends)):
            problems.append(f"resolution stages must end in increasing order, got {ends}")
        return problems

    def size_at(self, step: int, total_steps: int) -> int:
        """The image size of the 0-based global ``step`` of a run of ``total_steps`` steps."""
        share = step / max(total_steps, 1)
        return next((size for size, until in self.stages if share < until), FULL_SIZE)

    def cost(self) -> float:
        """The run's arithmetic relative to training every step at full size (it scales with the pixels)."""
        start, total = 0.0, 0.0
        for size, until in self.stages:
            total += (until - start) * (size / FULL_SIZE) ** 2
            start = until
        return total + (1.0 - start)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """A float image batch (N, C, H, W) at ``size`` x ``size`` (bilinear, antialiased, as downscaling needs);
    unchanged when it has that size already."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
