"""A training checkpoint's weights as a file to ship: half precision, safetensors, hash-named
(:mod:`~ghostmixnet.model.weights`), with its config and what its run recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import config_of
from ..files import check_writable
from ..infer.calibrate import NOVELTY
from ..model.checkpoint import load_checkpoint, resolve_checkpoint
from ..model.weights import check_stem, sha256_of, write_weights


def pack_checkpoint(checkpoint: Path | str, out_dir: Path, stem: str | None = None,
                    metadata: dict[str, Any] | None = None, echo: Callable[[str], None] | None = None,
                    novelty: dict[str, Any] | None | str = "keep") -> Path:
    """Write a training checkpoint's weights (a run folder stands for its ``best.pt``) as a weights file in
    ``out_dir``, with its config and what its run recorded: the epoch and, from the run's ``test.json``, the
    validation and test accuracy, and its calibration (temperature and "not sure" threshold) if it has one. A
    weights file given instead keeps what its metadata recorded. ``stem`` defaults to ``MODEL_DATASET``
    (``ghostmixnet_cifar10``, ``ghostmixnet_folder``, ...).
    ``echo`` is told what was written. The calibration's feature score (``novelty``: a checkpoint's entry of
    settings and arrays, None for none, ``keep``: the file's own) is stored as metadata and tensors."""
    if stem is not None:
        check_stem(stem)  # refused now, not as a file that every command then refuses
    path = resolve_checkpoint(Path(checkpoint))
    check_writable(out_dir, folder=True)
    ckpt = load_checkpoint(path)
    cfg = config_of(ckpt, path)
    meta: dict[str, Any] = {"epoch": ckpt.get("epoch"), "source": f"{path.parent.name}/{path.name}",
                            **ckpt.get("metadata", {})}
    test = path.parent / "test.json"
    if test.is_file() and path.suffix == ".pt":
        recorded = json.loads(test.read_text())
        meta.update(test_accuracy=recorded.get("accuracy"), val_accuracy=recorded.get("best_val_acc"))
    if ckpt.get("calibration") is not None:  # a checkpoint's; a weights file's is among its metadata
        meta["calibration"] = ckpt["calibration"]
    meta.update(metadata or {})
    if novelty == "keep":
        novelty = ckpt.get(NOVELTY) or ({"settings": json.loads(meta[NOVELTY])["settings"],
                                         "arrays": ckpt["novelty_arrays"]}
                                        if NOVELTY in meta and ckpt.get("novelty_arrays") else None)
    meta.pop(NOVELTY, None)
    arrays = None
    if novelty is not None:
        meta[NOVELTY], arrays = {"settings": novelty["settings"]}, novelty["arrays"]
    stem = stem or f"{cfg.model}_{cfg.dataset}".replace("-", "_")
    written = write_weights(ckpt["model"], cfg.to_dict(), out_dir, stem, meta, arrays)
    if echo is not None:
        echo(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB, sha256 {sha256_of(written)})")
    return written
