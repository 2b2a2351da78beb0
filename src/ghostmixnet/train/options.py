"""A run's arguments, grouped: where it runs, when it stops, how it reports (the config says what it trains)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checks import count, number
from .replan import Budget

EpochHook = Callable[[dict[str, Any], torch.nn.Module], "bool | None"]
"""Called on rank 0 after each epoch's validation with the epoch's metrics row and the trained weights."""


@dataclass(frozen=True)
class Where:
    """Where a run reads and writes, and on what."""

    data_dir: Path
    """The dataset's folder."""
    out_dir: Path
    """The run folder: checkpoints, logs, metrics, plots."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; under torchrun each process takes its own GPU."""
    resume: bool = False
    """Continue the run already in ``out_dir`` from its last checkpoint."""
    download: bool = False
    """Download the dataset if it is missing."""
    skip_bad: bool = False
    """Leave out (naming them) the images of a folder dataset that cannot be read, instead of stopping."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "out_dir", Path(self.out_dir))


@dataclass(frozen=True)
class StopRules:
    """When a run stops before its planned epochs are done (a signal always stops it, after the current step)."""

    stop_after: int | None = None
    """End this invocation after that many epochs, leaving a resumable run."""
    time_limit: float | None = None
    """Stop once the training time (validation excluded) reaches this many seconds, then score the best checkpoint."""
    budget: Budget | None = None
    """Re-plan a one-cycle run's steps from its measured pace so that it ends inside the budget, schedule complete."""
    epoch_end: EpochHook | None = None
    """Called after each epoch's validation; returning True ends the run there as at a time limit."""

    def __post_init__(self) -> None:
        if self.stop_after is not None:
            object.__setattr__(self, "stop_after", count(self.stop_after, "stop_after"))
        if self.time_limit is not None:
            object.__setattr__(self, "time_limit", number(self.time_limit, "time_limit (seconds)", above=0))


@dataclass(frozen=True)
class Reporting:
    """How a run reports and how often it saves within an epoch."""

    log_every: int = 50
    """Log the running loss every this many steps (and, on a GPU, read it from the device only then)."""
    checkpoint_every: int = 0
    """Also save ``last.pt`` every this many steps within an epoch (0: at epoch ends only)."""
    echo: Callable[[str], None] | None = None
    """Where the log's lines are printed (None: standard output); ``train.log`` keeps them either way."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint_every", count(self.checkpoint_every, "checkpoint_every", 0))
        object.__setattr__(self, "log_every", count(self.log_every, "log_every"))
