"""How a run ended, as one value: the epoch loop says why it stopped, and the run acts on that alone."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Why(Enum):
    """Why the epoch loop stopped."""

    DONE = "done"
    """Every planned epoch trained: the run is finished and scored."""
    BUDGET = "budget"
    """A run re-planned to a time budget reached its planned last step (or its time ran out first)."""
    TIME_LIMIT = "time limit"
    """The training time reached the time limit: the run is finished with the best checkpoint so far."""
    SIGNAL = "signal"
    """SIGTERM or SIGINT: saved, to be resumed."""
    CALLER = "caller"
    """The epoch-end hook asked to stop: finished as at a time limit."""
    STOP_AFTER = "stop after"
    """This invocation trained the epochs it was asked for: to be resumed."""


@dataclass(frozen=True)
class Ending:
    """Where and why a run's epoch loop stopped."""

    why: Why
    within_epoch: bool = False
    """It stopped between two steps of an epoch (``last.pt`` is to be saved there), not at an epoch's end."""
    step: int = 0
    """The epoch's last step done, when it stopped within an epoch."""
    signal: int = 0
    """The signal's number, for :attr:`Why.SIGNAL`."""
    out_of_time: bool = False
    """For :attr:`Why.BUDGET`: the time ran out before the plan's last step."""
