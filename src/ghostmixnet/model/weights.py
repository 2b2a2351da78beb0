"""Trained weights as files that keep loading: safetensors (no pickle), half precision, the config that
rebuilds the model in the file's metadata, and the first 8 hex digits of the file's sha256 in its name.

Shipped weights live in the package (``ghostmixnet/model/shipped/``), so ``pip install`` carries them and they
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
from safetensors import SafetensorError
from safetensors.torch import load, save

from ..errors import WeightsError
from ..files import atomic_open, open_regular, read_regular

WEIGHTS_DIR = Path(__file__).parent / "shipped"
"""Where the package keeps its shipped weights."""
PRETRAINED = "pretrained"
"""The word that names the shipped weights wherever a checkpoint is accepted (``ghostmixnet eval pretrained``)."""


def names_shipped(path: Path | str) -> bool:
    """Whether ``path`` is the word ``pretrained`` (or ``pretrained:MODEL``, another member's) and no file or
    folder of that name exists."""
    text = str(path)
    return (text == PRETRAINED or text.startswith(f"{PRETRAINED}:")) and not Path(path).exists()


EXTRA = "novelty."
"""The prefix of the tensors a weights file holds beside the model's: the arrays of its out-of-distribution score."""
NAME = re.compile(r"^(?P<stem>[A-Za-z0-9_.]+)-(?P<hash>[0-9a-f]{8})\.safetensors$")
STEM = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,199}$")
"""What may come before the hash in a weights file's name: what :data:`NAME` reads back, not hidden, not
longer than file systems allow."""


def check_stem(stem: str) -> str:
    """``stem`` if a weights file named by it is one that every command reads back; else a one-line
    :class:`WeightsError` saying what is allowed and suggesting a name that is."""
    if not isinstance(stem, str) or not STEM.match(stem):
        suggestion = re.sub(r"[^A-Za-z0-9_.]", "_", str(stem)).lstrip(".")[:200] or "my_model"
        raise WeightsError(f"--name {stem!r} cannot name a weights file: use letters, digits, '_' and '.' only (not "
                           f"first), at most 200 characters, since '-HASH8' follows it; e.g. --name {suggestion}")
    return stem


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as hex, read in 1 MiB blocks (a FIFO or device is refused, never waited on)."""
    digest = hashlib.sha256()
    with open_regular(path, "file") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, data: bytes | None = None) -> None:
    """Refuse ``path`` unless its sha256 (of ``data``, its bytes as read, when given) begins with the 8 hex
    digits its name ends in (torch.hub's rule)."""
    match = NAME.match(Path(path).name)
    if match is None:
        raise WeightsError(f"{path}: a weights file's name ends in -HASH8.safetensors (the first 8 hex digits of "
                           "its sha256), so that it can be checked; rename it, or write it with ghostmixnet")
    actual = sha256_of(path) if data is None else hashlib.sha256(data).hexdigest()
    if not actual.startswith(match["hash"]):
        raise WeightsError(f"{path} is corrupted or altered: its sha256 begins {actual[:8]}, its name says "
                           f"{match['hash']}. Reinstall ghostmixnet (pip install --force-reinstall ghostmixnet) "
                           "or download the file again")


def is_shipped(path: Path) -> bool:
    """Whether ``path`` lies in the folder of the package's shipped weights (where nothing else is written)."""
    return Path(path).resolve().parent == WEIGHTS_DIR.resolve()


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
    its hash checked first. The file is read once: the bytes whose hash is checked are the bytes loaded, even
    if the file is replaced meanwhile."""
    path = Path(path)
    data = read_regular(path, "weights file")
    check_hash(path, data)
    try:
        metadata = header_metadata(data)
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError) as e:
        raise WeightsError(f"{path} is not a readable safetensors file: {str(e).splitlines()[0]}") from None
    if "config" not in metadata:
        raise WeightsError(f"{path} carries no ghostmixnet config in its metadata; it was not written by ghostmixnet")
    try:
        config = json.loads(metadata["config"])
    except ValueError:
        raise WeightsError(f"{path}: its 'config' metadata is not JSON; write the file again with ghostmixnet "
                           "pack") from None
    extra = {k[len(EXTRA):]: v for k, v in tensors.items() if k.startswith(EXTRA)}
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if not k.startswith(EXTRA)}
    info = {k: v for k, v in metadata.items() if k != "config"}
    return {"model": state, "config": config, "epoch": info.get("epoch", "shipped"), "metadata": info,
            "novelty_arrays": extra}


def header_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's bytes: its header is an 8-byte little-endian length, then
    that many bytes of JSON. A ``ValueError`` when the header is not one."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise ValueError("its header is cut short or its length field is wrong")
    header = json.loads(data[8:8 + size])
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("its __metadata__ is not a map of strings")
    return metadata


def write_weights(state_dict: dict[str, torch.Tensor], config: Any, out_dir: Path, stem: str,
                  metadata: dict[str, Any] | None = None, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``state_dict`` in half precision (integer buffers as they are) with ``config`` (the run's config, as
    a dict or an object with ``to_dict``: what rebuilds the model) and ``metadata`` as
    ``out_dir/STEM-HASH8.safetensors``; returns the path. ``extra`` tensors (the arrays of an out-of-distribution
    score) are stored beside the weights under names starting :data:`EXTRA`, which :func:`read_weights` returns
    apart from them."""
    check_stem(stem)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    tensors = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in {**state_dict, **{EXTRA + k: v for k, v in (extra or {}).items()}}.items()}
    meta = {"config": json.dumps(config), "format": "ghostmixnet-weights-1",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    data = save(tensors, meta)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.safetensors"
    with atomic_open(final, "wb") as f:
        f.write(data)
    return final
