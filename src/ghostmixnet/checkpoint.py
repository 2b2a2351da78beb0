"""Checkpoints: written atomically, read without executing code, and able to rebuild their model.

A checkpoint is a dict of tensors and plain values (``torch.save``): the unwrapped model's state
dict, the config that rebuilds the model, and for training checkpoints the optimizer, scheduler,
epoch and random states. It loads with ``weights_only=True``, so a hostile file cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .config import TrainConfig
from .data import CLASSES
from .files import atomic_open
from .models import build_model
from .training import RunError

if TYPE_CHECKING:
    from .training import Training

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, unsafe or for another model; the message says which."""


def save_atomic(obj: Any, path: Path, keep_previous: Path | None = None) -> None:
    """``torch.save`` through :func:`~ghostmixnet.files.atomic_open`: a crash or kill during the save leaves
    the previous file at ``path`` untouched; with ``keep_previous`` the replaced file is kept there."""
    with atomic_open(path, "wb", keep_previous=keep_previous) as f:
        torch.save(obj, f)


def verify_archive(path: Path) -> None:
    """Check a checkpoint's zip structure and every record's CRC-32: ``torch.load`` alone reads a file
    with flipped bytes in its tensor data without complaint."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt, or not a checkpoint ({e})") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: its record {bad!r} fails its CRC-32 check")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and ``torch.compile`` wrappers (in either order)."""
    for _ in range(2):
        model = getattr(model, "_orig_mod", model)
        model = getattr(model, "module", model)
    return model


def resolve_checkpoint(path: Path) -> Path:
    """``path``, or the ``best.pt`` in it when it is a run folder, or the shipped weights when it is the word
    ``pretrained`` (and no such file or folder exists); a clear error when none of these exists."""
    from .pretrained import PRETRAINED, shipped_weights

    path = Path(path)
    if str(path) == PRETRAINED and not path.exists():
        return shipped_weights()
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt"
        raise CheckpointError(f"{path} is a folder without best.pt; name a checkpoint file (a run's best.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a ghostmixnet checkpoint safely (``weights_only=True``) and check its shape. A ``.safetensors``
    weights file (:mod:`~ghostmixnet.pretrained`: no pickle, hash-checked) reads as a checkpoint too."""
    from .pretrained import read_weights

    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    verify_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain values, which could run code; "
            "only checkpoints written by ghostmixnet are accepted") from None  # (never advise weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not a ghostmixnet checkpoint (it lacks the model weights or the config "
                              "that rebuilds the model)")
    return ckpt


def config_of(ckpt: dict[str, Any], path: Path | str = "checkpoint") -> TrainConfig:
    """The :class:`TrainConfig` stored in a checkpoint."""
    try:
        return TrainConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config is invalid: {e}") from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> None:
    """Load a state dict strictly; a mismatch, or a weight that is NaN or infinite, is a
    :class:`CheckpointError` naming the file and the differences."""
    check_fits(unwrap(model).state_dict(), state, path)
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights ({len(bad)} tensors, e.g. {bad[0]}): a model "
                              "with them predicts nothing meaningful; use another checkpoint (a run's last.prev.pt?)")
    unwrap(model).load_state_dict(state)


def check_fits(own: dict[str, torch.Tensor], state: dict[str, Any], path: Path | str = "checkpoint") -> None:
    """Refuse ``state`` unless it has exactly the tensors of ``own`` (names and shapes)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape (e.g. {wrong[0]})")
        raise CheckpointError(f"{path} holds weights for a different model or class count: "
                              f"{'; '.join(parts)}")


def model_from_checkpoint(path: Path) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode on the CPU."""
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    if cfg.num_classes != len(CLASSES):
        raise CheckpointError(f"{path}: its model has {cfg.num_classes} outputs but CIFAR-10 has {len(CLASSES)} "
                              "classes; use a checkpoint of a CIFAR-10 model")
    if not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path} holds no model weights")
    # The config is a stranger's word: check it against the stored tensors on the meta device (no memory)
    # before building the model for real, so a small file cannot make the tool allocate gigabytes.
    with torch.device("meta"):
        probe = build_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width, dropout=cfg.dropout)
    check_fits(probe.state_dict(), ckpt["model"], path)
    model = build_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width, dropout=cfg.dropout)
    load_weights(model, ckpt["model"], path)
    return model.eval(), cfg, ckpt


# ---- a training run's own checkpoints: what last.pt holds, saving it, loading it to resume ----

LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"


@dataclass
class RunState:
    """Where a run stands between two steps, besides the states of its model, optimizer, scheduler, scaler
    and weight average: together they are what ``last.pt`` holds, all a resumed run needs."""

    epoch: int = 0
    """Epochs finished."""
    step: int = 0
    """Steps done of the epoch in progress (0 at an epoch's end)."""
    best_acc: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    """One metrics row per finished epoch."""
    partial: dict[str, Any] = field(default_factory=lambda: {"loss_sum": 0.0, "images": 0, "seconds": 0.0})
    """The epoch in progress's running totals."""


def training_checkpoint(t: Training, state: RunState, processes: int) -> dict[str, Any]:
    """The contents of ``last.pt`` for the parts ``t`` at ``state``, saved by a run of ``processes``."""
    return {"format": FORMAT_VERSION, "model": unwrap(t.model).state_dict(), "config": t.cfg.to_dict(),
            "epoch": state.epoch, "step": state.step, "partial": dict(state.partial),
            "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict(), "best_acc": state.best_acc, "best_epoch": state.best_epoch,
            "history": state.history, "processes": processes,
            **({"ema": t.ema.state_dict()} if t.ema is not None else {})}


def load_resume_checkpoint(out_dir: Path, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """The newest usable training checkpoint of a run: ``last.pt``, or the one before it if ``last.pt``
    is missing, truncated or corrupt (saying so)."""
    out_dir = Path(out_dir)
    errors = []
    for name in (LAST, PREVIOUS):
        path = out_dir / name
        if not path.exists():
            errors.append(f"{path} does not exist")
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if "optimizer" not in ckpt or "epoch" not in ckpt:
            errors.append(f"{path} holds weights only, not the training state a resume needs")
            continue
        if name != LAST:
            log(f"warning: {errors[0]}; resuming from the previous checkpoint {path} instead")
        return ckpt, path
    raise RunError("cannot resume: " + "; ".join(errors))


def restore_training(t: Training, ckpt: dict[str, Any], path: Path, processes: int) -> RunState:
    """Load a training checkpoint into the parts ``t``; the run's state. A checkpoint saved within an epoch
    must be resumed by as many processes as saved it (their shards of the epoch differ otherwise)."""
    load_weights(t.model, ckpt["model"], path)
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    t.scaler.load_state_dict(ckpt["scaler"])
    if t.ema is not None:
        if "ema" not in ckpt:
            raise RunError(f"{path} holds no weight average although the config asks for one (ema_decay)")
        t.ema.load_state_dict(ckpt["ema"])
    state = RunState(ckpt["epoch"], ckpt.get("step", 0), ckpt["best_acc"], ckpt["best_epoch"], list(ckpt["history"]),
                     dict(ckpt.get("partial", RunState().partial)))
    if state.step and ckpt.get("processes", 1) != processes:
        raise RunError(f"{path} was saved in the middle of an epoch by {ckpt.get('processes', 1)} process(es); "
                       f"resume it with that many (this run has {processes}), or from an epoch end")
    return state
