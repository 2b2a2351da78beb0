"""The run folder and the run's process: who may start or resume in it, and the signals that stop it."""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..errors import CheckpointError, RunError
from ..files import check_writable, exclusive_lock, exhausted_words
from ..model.checkpoint import resolve_checkpoint
from .distributed import DistEnv
from .resume import LAST, LOCK, PREVIOUS


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
                    refusal = _refusal(e, out_dir)
            # Every process stops if rank 0 was refused.
            if env.all_reduce_sum(torch.tensor([float(bool(refusal))], dtype=torch.float64))[0]:
                raise RunError(refusal or f"{out_dir} is in use by another run or resume")
            yield
    finally:
        if made and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def _refusal(error: OSError, out_dir: Path) -> str:
    """Why the run folder cannot be held, in one line: another run holds it, a resource ran out (the disk, file
    descriptors), or the folder cannot be written."""
    if error.errno == errno.EBUSY:
        return f"{error.strerror or error}; wait for it to end, or choose another --out"
    words = exhausted_words(error, out_dir)
    return f"cannot hold the run folder {out_dir}: {words}" if words else f"{error.strerror or error}"


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
    for flag, given in (("--init", cfg.init), ("--distill", cfg.distill)):
        if given is not None:  # a checkpoint that is not there refused before minutes of reading data, not after
            try:
                resolve_checkpoint(Path(given))
            except CheckpointError as e:
                raise RunError(f"{flag}: {e}") from None
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
