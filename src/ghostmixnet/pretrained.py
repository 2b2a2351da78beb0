"""Trained weights as files that keep loading: safetensors (no pickle), half precision, the config that
rebuilds the model in the file's metadata, and the first 8 hex digits of the file's sha256 in its name.

Shipped weights live in the package (``ghostmixnet/weights/``), so ``pip install`` carries them and they
load offline. Every load checks the file's hash against its name, so a truncated or altered file is
refused with a clear message rather than loaded into a model that silently predicts nonsense.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""Where the package keeps its shipped weights."""
PRETRAINED = "pretrained"
"""The word that names the shipped weights wherever a checkpoint is accepted (``ghostmixnet eval pretrained``)."""
NAME = re.compile(r"^(?P<stem>[A-Za-z0-9_.]+)-(?P<hash>[0-9a-f]{8})\.safetensors$")


class WeightsError(ValueError):
    """A weights file is missing, altered or not ghostmixnet's; the message says which and what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path) -> None:
    """Refuse ``path`` unless its sha256 begins with the 8 hex digits its name ends in (torch.hub's rule)."""
    match = NAME.match(Path(path).name)
    if match is None:
        raise WeightsError(f"{path}: a weights file's name ends in -HASH8.safetensors (the first 8 hex digits of "
                           "its sha256), so that it can be checked; rename it, or write it with ghostmixnet")
    actual = sha256_of(path)
    if not actual.startswith(match["hash"]):
        raise WeightsError(f"{path} is corrupted or altered: its sha256 begins {actual[:8]}, its name says "
                           f"{match['hash']}. Reinstall ghostmixnet (pip install --force-reinstall ghostmixnet) "
                           "or download the file again")


def shipped_weights(model: str = "ghostmixnet", directory: Path | None = None) -> Path:
    """The weights file shipped for ``model`` (CIFAR-10) in ``directory`` (the package's), or a clear error
    when this install has none."""
    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    found = sorted(Path(directory).glob(f"{model.replace('-', '_')}_cifar10-*.safetensors"))
    if not found:
        raise WeightsError(f"no shipped weights for {model!r} in {directory}: this install carries none for it; "
                           "train a model (ghostmixnet train --recipe fast) and name its run folder instead")
    if len(found) > 1:
        raise WeightsError(f"several weights files for {model!r} in {directory}: {[p.name for p in found]}; "
                           "keep one (reinstall ghostmixnet)")
    return found[0]


def read_weights(path: Path) -> dict[str, Any]:
    """A weights file as a checkpoint dict (``model``: float32 state dict, ``config``, ``epoch``, ``metadata``),
    its hash checked first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    check_hash(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file: {e}") from None
    if "config" not in metadata:
        raise WeightsError(f"{path} carries no ghostmixnet config in its metadata; it was not written by ghostmixnet")
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    info = {k: v for k, v in metadata.items() if k != "config"}
    return {"model": state, "config": json.loads(metadata["config"]), "epoch": info.get("epoch", "shipped"),
            "metadata": info}


def write_weights(state_dict: dict[str, torch.Tensor], cfg: TrainConfig, out_dir: Path, stem: str,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Write ``state_dict`` in half precision (integer buffers as they are) with ``cfg`` and ``metadata`` as
    ``out_dir/STEM-HASH8.safetensors``; returns the path."""
    from safetensors.torch import save

    from .files import atomic_open

    tensors = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state_dict.items()}
    meta = {"config": json.dumps(cfg.to_dict()), "format": "ghostmixnet-weights-1",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f"{stem}.safetensors.partial"
    with atomic_open(staging, "wb") as f:
        f.write(save(tensors, meta))
    final = out_dir / f"{stem}-{sha256_of(staging)[:8]}.safetensors"
    staging.replace(final)
    return final


def load_pretrained(model: torch.nn.Module, name: str = "ghostmixnet", path: Path | str | None = None
                    ) -> torch.nn.Module:
    """Load trained weights into ``model``, in place, and return it: those shipped for ``name``, or ``path``
    (a weights file, a checkpoint, a run folder, or the word ``pretrained``).

    The architecture and width must match the weights'. A model with another number of classes keeps its
    own, freshly initialised classifier (``fc``) and takes every other layer: the start of a fine-tuning.
    """
    from .checkpoint import config_of, load_checkpoint, load_weights, resolve_checkpoint

    path = shipped_weights(name) if path is None else resolve_checkpoint(Path(path))
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    if cfg.model != name:
        raise WeightsError(f"{path} holds weights of {cfg.model!r}, not {name!r}")
    state = ckpt["model"]
    own = model.state_dict()
    if own["fc.weight"].shape[0] != cfg.num_classes:
        state = {**{k: v for k, v in state.items() if not k.startswith("fc.")},
                 **{k: v for k, v in own.items() if k.startswith("fc.")}}
    load_weights(model, state, path)
    return model


def pack_checkpoint(checkpoint: Path | str, out_dir: Path, stem: str | None = None,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write a training checkpoint's weights (a run folder stands for its ``best.pt``) as a weights file in
    ``out_dir``, with its config and what its run recorded: the epoch and, from the run's ``test.json``, the
    validation and test accuracy. ``stem`` defaults to ``MODEL_cifar10``."""
    from .checkpoint import config_of, load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(Path(checkpoint))
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    meta: dict[str, Any] = {"epoch": ckpt.get("epoch"), "source": f"{path.parent.name}/{path.name}"}
    test = path.parent / "test.json"
    if test.is_file() and path.suffix == ".pt":
        recorded = json.loads(test.read_text())
        meta.update(test_accuracy=recorded.get("accuracy"), val_accuracy=recorded.get("best_val_acc"))
    meta.update(metadata or {})
    return write_weights(ckpt["model"], cfg, out_dir, stem or f"{cfg.model.replace('-', '_')}_cifar10", meta)
