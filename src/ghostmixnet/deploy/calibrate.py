"""``ghostmixnet calibrate``: fit a model file's temperature and "not sure" threshold on its run's validation
split (:mod:`~ghostmixnet.infer.calibrate`) and write them into it: a checkpoint as it is (or as ``out``), a
weights file as a new hash-named file, since its name is its hash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..checks import count, number
from ..data.cifar import cifar_files
from ..data.sources import data_files, load_data
from ..data.splits import stratified_subset
from ..device import resolve_device
from ..errors import DataError
from ..files import check_output, check_writable
from ..infer.calibrate import NOVELTY, SCORE, Calibration, calibrate_on_split, calibration_errors, novelty_entry
from ..infer.load import model_from_checkpoint
from ..infer.novelty import SCORES
from ..model.checkpoint import beside, resolve_checkpoint, save_atomic
from ..model.weights import NAME
from .export import check_suffix
from .pack import pack_checkpoint

FIT_IMAGES = 10000
"""Training images a feature-space score is fit on (a stratified, seeded choice; all of a smaller set)."""


def calibrate_checkpoint(checkpoint: Path, data_dir: Path, out: Path | None = None, keep: float = 0.95,
                         device: str = "auto", batch_size: int = 256, score: str = SCORE,
                         echo: Callable[[str], None] = print) -> tuple[Path, Calibration]:
    """Fit the calibration of a model file (a run folder stands for its ``best.pt``; ``pretrained``: the
    shipped weights) on its run's validation split, with its run's test-time views, so that a share ``keep``
    of those images is kept above the threshold. A checkpoint is rewritten with it (or written as ``out``); a
    weights file is written anew into the folder ``out`` (default: beside it). Returns the file written and
    the calibration. The threshold is on ``score``: ``energy`` or ``msp`` of the logits, or a feature-space score
    (``knn``, ``mahalanobis``, ``vim``), fit first on up to :data:`FIT_IMAGES` training images and stored with it."""
    if score not in SCORES:
        raise DataError(f"--score {score!r}: choose one of {', '.join(SCORES)}")
    keep, batch_size = number(keep, "keep", above=0, below=1), count(batch_size, "batch_size")
    source = resolve_checkpoint(Path(checkpoint))
    if source.suffix.lower() == ".onnx":
        raise DataError(f"{source} is an ONNX file; calibrate the checkpoint it was exported from, then export "
                        "it again (the calibration travels in the ONNX metadata)")
    weights = source.suffix == ".safetensors"
    target = Path(out) if out is not None else (beside(source, ".") if weights else source)
    if weights:
        check_writable(target, folder=True)
    elif target != source:
        check_suffix(target, ".pt", "checkpoint")  # a checkpoint named otherwise would be taken for an image or ONNX
        check_output(target, [source, *cifar_files(data_dir)])
    model, cfg, ckpt = model_from_checkpoint(source)
    if cfg.selects_on_test:
        raise DataError(f"{source} was trained without a validation split (--val-size 0): fitting on the test set "
                        "would tune on it; train with a validation split to calibrate")
    if not weights:
        check_output(target, data_files(cfg.dataset, data_dir))
    splits = load_data(cfg.dataset, data_dir, **cfg.data_fields())
    val, dev = splits.val, resolve_device(device)
    fit = stratified_subset(splits.train, FIT_IMAGES, seed=cfg.split_seed + 3)
    calibration, logits = calibrate_on_split(model.to(dev), val.images, val.labels, dev, cfg, keep, batch_size,
                                             splits.record.get("origin", {}).get("val"), score,
                                             (fit.images, fit.labels))
    report_fit(calibration, logits, val.labels, echo)
    novelty = novelty_entry(calibration)
    if weights:
        match = NAME.match(source.name)
        written = pack_checkpoint(source, target, stem=match["stem"] if match else None,
                                  metadata={"calibration": calibration.to_dict()}, echo=echo, novelty=novelty)
    else:
        entry = {NOVELTY: novelty} if novelty is not None else {}
        save_atomic({**{k: v for k, v in ckpt.items() if k != NOVELTY}, "calibration": calibration.to_dict(),
                     **entry}, target)
        written = target
        echo(f"wrote the calibration into {written}")
    return written, calibration


def report_fit(calibration: Calibration, logits: torch.Tensor, labels: np.ndarray,
               echo: Callable[[str], None]) -> None:
    """Say what a calibration does on the images it was fit on: the temperature, ECE before and after, and
    the threshold."""
    before, after = calibration_errors(calibration, logits, labels)
    echo(f"temperature {calibration.temperature:.4f} fit on the {calibration.fitted_on}: expected calibration error "
         f"{100 * before:.2f}% -> {100 * after:.2f}% there")
    score = {"energy": "an energy score", "msp": "a maximum softmax probability"}.get(
        calibration.score, f"a {calibration.score} score")
    stored = (f" (its arrays: {calibration.feature_score.size_bytes() / 1e6:.2f} MB in half precision)"
              if calibration.feature_score is not None else "")
    echo(f"'not sure' below {score} of {calibration.threshold:.4f}, which keeps {100 * calibration.keep:.0f}% of "
         f"those images{stored}")
