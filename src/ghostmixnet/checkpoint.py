"""Checkpoints: written atomically, read without executing code, and able to rebuild their model.

A checkpoint is a dict of tensors and plain values (``torch.save``): the unwrapped model's state
dict, the config that rebuilds the model, and for training checkpoints the optimizer, scheduler,
epoch and random states. It loads with ``weights_only=True``, so a hostile file cannot run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .models import build_model

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, unsafe or for another model; the message says which."""


def save_atomic(obj: Any, path: Path, keep_previous: Path | None = None) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it.

    A crash or kill during the save leaves the previous file at ``path`` untouched. With
    ``keep_previous``, the file being replaced is first renamed there, so one older good copy
    survives even a checkpoint that is later found damaged.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a ghostmixnet checkpoint safely (``weights_only=True``) and check its shape."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    verify_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain values, which could run code "
            f"({str(e).splitlines()[0]}); only checkpoints written by ghostmixnet are accepted") from None
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
    """Load a state dict strictly; a mismatch is a :class:`CheckpointError` naming the differences."""
    own = unwrap(model).state_dict()
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
    unwrap(model).load_state_dict(state)


def model_from_checkpoint(path: Path) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode on the CPU."""
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    model = build_model(cfg.model, num_classes=cfg.num_classes, width=cfg.width, dropout=cfg.dropout)
    load_weights(model, ckpt["model"], path)
    return model.eval(), cfg, ckpt
