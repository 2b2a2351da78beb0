"""Model files: checkpoints written atomically, read without executing code, and able to rebuild their model.

A checkpoint is a dict of tensors and plain values (``torch.save``): the unwrapped model's state
dict and the config that rebuilds the model (training checkpoints add what a resume needs:
``ghostmixnet.train.resume``). It loads with ``weights_only=True``, so a hostile file cannot run code;
a ``.safetensors`` weights file (:mod:`~ghostmixnet.model.weights`) reads as a checkpoint too.
"""

from __future__ import annotations

import io
import numbers
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, DataError
from ..files import atomic_open, entry_problem, read_regular
from .architectures import CifarNet, build_architecture
from .weights import is_shipped, names_shipped, read_weights, shipped_weights


def save_atomic(obj: Any, path: Path, keep_previous: Path | None = None) -> None:
    """``torch.save`` through :func:`~ghostmixnet.files.atomic_open`: a crash or kill during the save leaves
    the previous file at ``path`` untouched; with ``keep_previous`` the replaced file is kept there."""
    with atomic_open(path, "wb", keep_previous=keep_previous) as f:
        torch.save(obj, f)


def verify_archive(path: Path, data: bytes) -> None:
    """Check a checkpoint's zip structure and every record's CRC-32 (``data``: the file's bytes, named ``path``):
    ``torch.load`` alone reads a file with flipped bytes in its tensor data without complaint. Before reading
    any record, refuse compressed ones and ones larger than the file: PyTorch stores its records uncompressed,
    and a small file of compressed zeros would otherwise unpack into gigabytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_records(archive, path, len(data))
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt, or not a checkpoint ({e})") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: its record {bad!r} fails its CRC-32 check")


def _check_records(archive: zipfile.ZipFile, path: Path, size: int) -> None:
    """Refuse, from the archive's directory alone, records that could unpack to more than the file's ``size``
    bytes hold."""
    for record in archive.infolist():
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path} was refused: its record {record.filename!r} is compressed, which PyTorch "
                                  "never writes; only checkpoints written by ghostmixnet are accepted")
        if record.file_size > size:
            raise CheckpointError(f"{path} was refused: its record {record.filename!r} claims {record.file_size:,} "
                                  f"bytes in a file of {size:,}; the file is corrupt or not a checkpoint")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and ``torch.compile`` wrappers (in either order)."""
    for _ in range(2):
        model = getattr(model, "_orig_mod", model)
        model = getattr(model, "module", model)
    return model


def resolve_checkpoint(path: Path) -> Path:
    """``path``, or the ``best.pt`` in it when it is a run folder, or the shipped weights when it is the word
    ``pretrained`` (``pretrained:MODEL``: those of another member of the family, e.g. ``pretrained:ghostmixnet-ic01``)
    and no such file or folder exists; a clear error when none of these exists."""
    path = Path(path)
    if names_shipped(path):  # pretrained, or pretrained:ghostmixnet-ic01
        return shipped_weights(*str(path).split(":", 1)[1:])
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt"
        raise CheckpointError(f"{path} is a folder without best.pt; name a checkpoint file (a run's best.pt)")
    problem = entry_problem(path)
    if problem is not None:  # missing, a FIFO, a dangling link...: never opened, so never blocking
        raise CheckpointError(f"checkpoint {path} {problem}")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a ghostmixnet checkpoint safely (``weights_only=True``) and check its shape. A ``.safetensors``
    weights file (:mod:`~ghostmixnet.model.weights`: no pickle, hash-checked) reads as a checkpoint too. The
    file is read once, so the bytes checked are the bytes loaded even if the file is replaced meanwhile."""
    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    try:
        data = read_regular(path, "checkpoint")
    except DataError as e:  # unreadable, or gone since it was looked at
        raise CheckpointError(str(e)) from None
    verify_archive(path, data)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
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
    strange = next((k for k, v in state.items() if not torch.is_tensor(v)), None) if isinstance(state, dict) else None
    if strange is not None:
        raise CheckpointError(f"{path} holds weights for a different model or class count: {strange!r} is a "
                              f"{type(state[strange]).__name__}, not a tensor")
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


@dataclass(frozen=True)
class ModelSpec:
    """What a model file must say of its model to rebuild it: the config fields the builder takes."""

    model: str = "ghostmixnet"
    num_classes: int = 10
    width: float = 1.0
    dropout: float = 0.2
    image_size: int = 32

    @classmethod
    def of(cls, ckpt: dict[str, Any], path: Path | str = "checkpoint") -> ModelSpec:
        """The spec a checkpoint's config gives (its fields' defaults where it is silent); a
        :class:`CheckpointError` when the config is not one."""
        config = ckpt.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: its config is invalid: a dict of fields is expected")
        spec = cls(**{k: config[k] for k in ("model", "num_classes", "width", "dropout", "image_size") if k in config})
        numbers_ok = (all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.num_classes, spec.image_size))
                      and all(isinstance(v, numbers.Real) for v in (spec.width, spec.dropout)))
        if not isinstance(spec.model, str) or not numbers_ok:
            raise CheckpointError(f"{path}: its config is invalid: model, num_classes, width and dropout must be "
                                  "a name, an integer and two numbers")
        return spec


def check_spec(state: Any, spec: ModelSpec, path: Path | str = "checkpoint") -> None:
    """Refuse ``state`` unless it holds exactly the weights of the model ``spec`` describes. Every path that
    builds a model from a file checks this first: the config is a stranger's word, so it is checked against
    the stored tensors on the meta device (no memory), and a small file cannot make the tool allocate
    gigabytes."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no model weights")
    try:
        with torch.device("meta"):
            probe = build_architecture(spec.model, spec.num_classes, spec.width, spec.dropout, spec.image_size)
    except ValueError as e:
        raise CheckpointError(f"{path}: its config is invalid: {e}") from None
    check_fits(probe.state_dict(), state, path)


def rebuild(state: Any, spec: ModelSpec, path: Path | str = "checkpoint") -> CifarNet:
    """The model ``spec`` describes, holding the weights ``state``, in eval mode on the CPU."""
    check_spec(state, spec, path)
    model = build_architecture(spec.model, spec.num_classes, spec.width, spec.dropout, spec.image_size)
    load_weights(model, state, path)
    return model.eval()


def beside(checkpoint: Path, name: str) -> Path:
    """Where a command writes by default: beside the checkpoint (a run folder stands for its ``best.pt``), or
    in the working directory for the shipped weights (never inside the installed package)."""
    checkpoint = resolve_checkpoint(checkpoint) if Path(checkpoint).suffix.lower() != ".onnx" else Path(checkpoint)
    if is_shipped(checkpoint):
        return Path(name)
    return checkpoint.parent / name
