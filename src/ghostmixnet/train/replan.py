"""Re-planning a run to its budget of training time as it goes: the run's length in steps, worked out again
from the pace it measures, so that it ends inside the budget with its one-cycle schedule complete.

A one-cycle schedule needs its length up front. A burst of timed steps before the run gives a first plan
(:mod:`~ghostmixnet.train.budget`); on a shared machine the pace then drifts by 10-20% within an hour, so the
run re-plans from its own recent steps and stretches or shrinks the schedule to the steps that fit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..data.resolution import FULL_SIZE, ResolutionSchedule

REPLAN_MARGIN = 0.98
"""Share of the time left that the remaining steps may fill when a run re-plans as it goes: the pace is
measured on the run's own recent steps, and the last re-plans come at every step, so little room is needed."""


@dataclass(frozen=True)
class Budget:
    """A run's budget of training time, which it re-plans its steps to as it goes (:class:`Replanner`)."""

    seconds: float
    """Training time (validation excluded) the run ends within."""
    compile_seconds: float = 0.0
    """Measured time of the first steps (mostly compilation), charged again for each image size not yet trained."""
    steps: int = 0
    """Steps planned before the run, from a timed burst (0: the config's epochs); re-planned as the run goes."""

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Budget:
        return cls(float(data["seconds"]), float(data.get("compile_seconds", 0.0)), int(data.get("steps", 0)))


class Replanner:
    """Re-plans a one-cycle run's length in steps from the pace it measures, so that the run ends inside its
    budget of training time however the machine's speed drifts.

    A burst of steps before the run sizes it first (:func:`~ghostmixnet.train.budget.plan_budget`); as the run
    goes, every ``every`` steps the steps that fit the time left are worked out again from the mean time of the
    last ``window`` steps of each image size, and the schedule is stretched or shrunk to them. Steps of a size
    not trained yet (progressive resizing) are estimated from a trained size by their pixels, and each such size
    is charged ``compile_seconds`` for its compilation. The last re-plans come at every step, as the end nears.
    """

    def __init__(self, budget_seconds: float, sizes: ResolutionSchedule | None = None, compile_seconds: float = 0.0,
                 margin: float = REPLAN_MARGIN, every: int = 20, window: int = 40) -> None:
        if budget_seconds <= 0 or not 0 < margin <= 1 or every < 1 or window < 1:
            raise ValueError("a re-planner needs a positive budget, every and window, and a margin in (0, 1]")
        self.budget, self.sizes = budget_seconds, sizes or ResolutionSchedule()
        self.compile_seconds, self.margin, self.every, self.window = compile_seconds, margin, every, window
        self.times: dict[int, list[float]] = {}
        self.compiled: set[int] = set()
        self.last: tuple[int, float] | None = None

    def record(self, done: int, seconds: float, size: int) -> None:
        """Step ``done`` (1-based count of the run's steps) ended at ``seconds`` of training, at ``size`` pixels."""
        first_of_size = size not in self.compiled  # the first step of a size (also after a resume) compiles
        self.compiled.add(size)
        if not first_of_size and self.last is not None and done == self.last[0] + 1:
            took = seconds - self.last[1]
            times = self.times.setdefault(size, [])
            # A step much slower than its size's usual is compilation (the epoch's last, partial batch), not pace.
            if len(times) < 3 or took < 4 * _median(times):
                times.append(took)
                del times[:-self.window]
        self.last = (done, seconds)

    def due(self, done: int, total: int) -> bool:
        """Whether to re-plan after step ``done`` of ``total``: every ``every`` steps, and at each of the last
        ``every`` steps (where a wrong plan costs most)."""
        return bool(self.times) and (done % self.every == 0 or total - done <= self.every)

    def step_seconds(self, size: int) -> float:
        """The expected time of one step at ``size`` pixels."""
        if size in self.times:
            return sum(self.times[size]) / len(self.times[size])
        seen = min(self.times, key=lambda s: abs(s - size))
        return self.step_seconds(seen) * (size / seen) ** 2

    def seconds_for(self, done: int, total: int) -> float:
        """Expected training seconds of the 0-based steps ``done`` .. ``total - 1`` of a run of ``total`` steps."""
        counts: dict[int, int] = {}
        start = done
        for size, until in (*self.sizes.stages, (FULL_SIZE, 1.0)):
            # size_at gives ``size`` to the steps s with s / total < until, i.e. s < until * total.
            end = min(total, math.ceil(until * total))
            if end > start:
                counts[size] = counts.get(size, 0) + end - start
                start = end
        unseen = sum(1 for size in counts if size not in self.compiled)
        return sum(n * self.step_seconds(size) for size, n in counts.items()) + unseen * self.compile_seconds

    def plan(self, done: int, seconds: float) -> int:
        """The most steps in all (at least ``done``) whose remaining ones fit ``margin`` of the time left."""
        left = self.margin * (self.budget - seconds)
        if left <= 0:
            return done
        low, high = done, done + 1
        while self.seconds_for(done, high) <= left:  # double until it no longer fits, then bisect
            low, high = high, 2 * high
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self.seconds_for(done, mid) <= left else (low, mid)
        return low


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
