"""Probabilities that mean what they say, and "none of these".

A trained classifier's softmax is rarely calibrated: label smoothing, Mixup and weight averaging leave the
shipped model underconfident. One scalar fixes most of it (temperature scaling, Guo et al. 2017): the
logits are divided by a temperature fit on held-out images to minimise their negative log-likelihood. It
changes no answer, only the probabilities.

A closed-set classifier also answers one of its classes for an image of none of them. A score that is lower
for such images than for images of its classes marks them: the energy, ``T * logsumexp(logits / T)`` (Liu et
al. 2020), by default, or one of the feature-space scores of :mod:`~ghostmixnet.infer.novelty`, fit on
training images. An answer whose score falls below a threshold, chosen so that a share ``keep`` of held-out
images of the classes stay above it, is marked "not sure". All of it travels with the model (checkpoint,
weights file, ONNX metadata) as a :class:`Calibration`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..device import Compute
from ..errors import CheckpointError
from .logits import predict_features, predict_logits
from .novelty import FEATURE_SCORES, SCORES, FeatureScore, energy, fit_feature_score, max_softmax

SCORE = "energy"
"""The default out-of-distribution score: ``T * logsumexp(logits / T)``, higher for images of the model's
classes, which every model file and runtime can compute from its logits."""
UNSURE = "not sure: maybe none of these classes"
"""What predict, serve and the page say of an answer whose score falls below the threshold."""
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class Calibration:
    """How a model's logits become probabilities and a "not sure" mark; fit by :func:`fit_calibration`."""

    temperature: float = 1.0
    """The logits are divided by it before the softmax (1: the plain softmax)."""
    threshold: float | None = None
    """Energy score below which an answer is marked not sure (None: never marked)."""
    keep: float = 0.95
    """Share of the held-out images of the model's classes whose score is at or above ``threshold``."""
    images: int = 0
    """How many held-out images the temperature and threshold were fit on (0: not fit)."""
    fitted_on: str = ""
    """Which images those were, in words."""
    score: str = SCORE
    """The score the threshold is on: ``energy``, ``msp`` (maximum softmax) or a feature-space score (``knn``,
    ``mahalanobis``, ``vim``) whose fitted arrays :attr:`feature_score` holds."""
    feature_score: FeatureScore | None = field(default=None, repr=False, compare=False)
    """What a feature-space :attr:`score` was fit to (stored beside the calibration, not in its dict)."""

    def __post_init__(self) -> None:
        low, high = TEMPERATURE_RANGE
        if not (isinstance(self.temperature, (int, float)) and low <= self.temperature <= high):
            raise ValueError(f"temperature must be a number in [{low}, {high}], got {self.temperature!r}")
        if self.threshold is not None and not (isinstance(self.threshold, (int, float))
                                               and math.isfinite(self.threshold)):
            raise ValueError(f"threshold must be a finite number or None, got {self.threshold!r}")
        if not (isinstance(self.keep, (int, float)) and 0 < self.keep < 1):
            raise ValueError(f"keep must be a fraction between 0 and 1, got {self.keep!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.score in FEATURE_SCORES and (self.feature_score is None or self.feature_score.kind != self.score):
            raise ValueError(f"a {self.score} score needs its fitted arrays, and the model file carries none")

    @property
    def fitted(self) -> bool:
        return self.images > 0

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated softmax probabilities of (N, C) logits."""
        return (logits.float() / self.temperature).softmax(1)

    @property
    def needs_features(self) -> bool:
        """Whether :meth:`scores` reads the penultimate features as well as the logits."""
        return self.score in FEATURE_SCORES

    def scores(self, logits: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The :attr:`score` of each row of (N, C) logits (and, for a feature-space score, the (N, D)
        ``features`` of the same images): higher for images of the model's classes."""
        if self.score == "energy":
            return energy(logits, self.temperature)
        if self.score == "msp":
            return max_softmax(logits, self.temperature)
        if features is None:
            raise ValueError(f"the {self.score} score reads the model's features; this model gives its logits only")
        return self.feature_score(features, logits)

    def unsure(self, scores: torch.Tensor) -> torch.Tensor:
        """Which scores fall below the threshold (none without one)."""
        if self.threshold is None:
            return torch.zeros(scores.shape, dtype=torch.bool)
        return scores < self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able fields (the feature score's arrays are stored apart: :func:`novelty_entry`)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "feature_score"}

    @classmethod
    def from_dict(cls, raw: Any, source: str = "the model", feature_score: FeatureScore | None = None) -> Calibration:
        """A calibration from its dict (or that dict as JSON text), with the ``feature_score`` its file
        carries; a :class:`CheckpointError` naming ``source`` when it is not one."""
        try:
            raw = json.loads(raw) if isinstance(raw, str) else raw
            names = {f.name for f in fields(cls)} - {"feature_score"}
            if not isinstance(raw, dict) or not set(raw) <= names:
                raise ValueError(f"a dict with keys among {sorted(names)} is expected")
            return cls(**raw, feature_score=feature_score)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: its calibration is invalid ({e}); calibrate it again with "
                                  "`ghostmixnet calibrate`") from None


UNCALIBRATED = Calibration()
"""The plain softmax and no "not sure" mark: what a model without a fitted calibration gets."""


NOVELTY = "novelty"
"""The key of a feature score in a checkpoint and in a weights or ONNX file's metadata."""


def novelty_entry(calibration: Calibration) -> dict[str, Any] | None:
    """A checkpoint's entry for the calibration's feature score: its settings and half-precision arrays (None
    without one)."""
    fs = calibration.feature_score
    return None if fs is None else {"settings": fs.settings(), "arrays": fs.arrays()}


def novelty_text(calibration: Calibration) -> str | None:
    """The feature score as one string, for file metadata that holds strings only (ONNX): its settings and its
    arrays as a base64 safetensors blob."""
    from safetensors.torch import save

    fs = calibration.feature_score
    if fs is None:
        return None
    return json.dumps({"settings": fs.settings(), "arrays": base64.b64encode(save(fs.arrays())).decode("ascii")})


def _feature_score_of(info: dict[str, Any], source: str) -> FeatureScore | None:
    """The feature score a loaded model file carries: a checkpoint's entry, a weights file's settings and
    ``novelty.*`` tensors, or an ONNX file's metadata text."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    entry = info.get(NOVELTY)
    metadata = info.get("metadata") or {}
    if entry is None and NOVELTY in metadata:
        try:
            entry = json.loads(metadata[NOVELTY])
            if isinstance(entry, dict) and isinstance(entry.get("arrays"), str):
                entry["arrays"] = load(base64.b64decode(entry["arrays"], validate=True))
            elif isinstance(entry, dict) and "arrays" not in entry:
                entry["arrays"] = info.get("novelty_arrays", {})
        except (ValueError, TypeError, SafetensorError) as e:
            raise CheckpointError(f"{source}: its out-of-distribution score cannot be read ({str(e)[:80]}); fit it "
                                  "again with `ghostmixnet calibrate --score`") from None
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise CheckpointError(f"{source}: its out-of-distribution score is not a settings-and-arrays entry; fit it "
                              "again with `ghostmixnet calibrate --score`")
    return FeatureScore.restore(entry.get("settings"), entry.get("arrays"), source)


def calibration_of(info: dict[str, Any], source: str = "the model") -> Calibration:
    """The calibration a loaded model file carries (a checkpoint's ``calibration``, a weights file's or ONNX
    file's metadata entry), with its feature score, else :data:`UNCALIBRATED`."""
    raw = info.get("calibration")
    if raw is None:
        raw = (info.get("metadata") or {}).get("calibration")
    return UNCALIBRATED if raw is None else Calibration.from_dict(raw, source, _feature_score_of(info, source))


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 60) -> float:
    """The temperature in :data:`TEMPERATURE_RANGE` that minimises the negative log-likelihood of ``labels``.

    The likelihood is convex in 1/T, so it has one minimum along log T, found by golden-section search:
    deterministic, no learning rate, and the same answer on every machine to float precision."""
    logits, labels = logits.double(), torch.as_tensor(labels).long()
    if len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"fitting a temperature needs as many labels as logits, got {len(logits)} and {len(labels)}")
    lo, hi = (math.log(v) for v in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logits, labels, math.exp(a)), _nll(logits, labels, math.exp(b))
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2)


def fit_calibration(logits: torch.Tensor, labels: np.ndarray | torch.Tensor, keep: float = 0.95,
                    fitted_on: str = "validation split", features: torch.Tensor | None = None,
                    feature_score: FeatureScore | None = None, score: str = SCORE) -> Calibration:
    """The temperature (:func:`fit_temperature`) and the threshold of ``score`` that keeps ``keep`` of these
    held-out images of the model's classes, from their logits and labels (and, for a feature-space score, their
    ``features`` and the ``feature_score`` fit on training images)."""
    if not 0 < keep < 1:
        raise ValueError(f"keep must be a fraction between 0 and 1, got {keep!r}")
    temperature = fit_temperature(logits, torch.as_tensor(labels))
    scorer = Calibration(temperature, score=score, feature_score=feature_score)
    scores = scorer.scores(logits, features).double().numpy()
    threshold = float(np.quantile(scores, 1 - keep))
    return dataclasses.replace(scorer, threshold=threshold, keep=keep, images=len(logits), fitted_on=fitted_on)


def calibrate_on_split(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, compute: Compute | torch.device,
                       cfg: TrainConfig, keep: float = 0.95, batch_size: int = 256, origin: str | None = None,
                       score: str = SCORE, fit_on: tuple[np.ndarray, np.ndarray] | None = None,
                       ) -> tuple[Calibration, torch.Tensor]:
    """Fit ``model``'s calibration (:func:`fit_calibration`) on its run's validation split, ``images`` and
    ``labels``, with the run's test-time views, as its predictions are made; with the logits it was fit on.
    ``origin`` says where a folder's validation images came from (its splits' record); None: CIFAR's split.
    A feature-space ``score`` is first fit on ``fit_on``, training images and their labels (never the
    validation images its threshold is set on)."""
    views = f", with its test-time views (shift {cfg.tta_shift})" if cfg.tta else ""
    where = (f"validation split ({len(images)} images, {origin}){views}" if origin else
             f"validation split ({len(images)} training images, split seed {cfg.split_seed}){views}")
    if score not in FEATURE_SCORES:
        logits = predict_logits(model, images, compute, batch_size, cfg.tta, cfg.tta_shift, cfg.normalization)
        return fit_calibration(logits, labels, keep, where, score=score), logits
    if fit_on is None:
        raise ValueError(f"the {score} score is fit on training images; give them")
    train_logits, train_features = predict_features(model, fit_on[0], compute, batch_size,
                                                    normalization=cfg.normalization)
    feature_score = fit_feature_score(score, train_features, fit_on[1], train_logits)
    logits, features = predict_features(model, images, compute, batch_size, cfg.tta, cfg.tta_shift, cfg.normalization)
    where += f"; the {score} score fit on {len(fit_on[0])} training images"
    return fit_calibration(logits, labels, keep, where, features, feature_score, score), logits


def predict_for(calibration: Calibration, model: torch.nn.Module, images: np.ndarray, compute: Compute | torch.device,
                batch_size: int = 256, tta: bool = False, tta_shift: int = 0,
                normalization: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits of ``images`` (:func:`predict_logits`) and, when the ``calibration``'s score reads them, their
    features in the same pass (:func:`predict_features`; None otherwise): what :meth:`Calibration.scores` takes."""
    if calibration.needs_features:
        return predict_features(model, images, compute, batch_size, tta, tta_shift, normalization)
    return predict_logits(model, images, compute, batch_size, tta, tta_shift, normalization), None


def calibration_errors(calibration: Calibration, logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Expected calibration error (:func:`calibration_bins`) of the plain softmax of ``logits`` and at the
    ``calibration``'s temperature."""
    labels = np.asarray(labels)
    return (calibration_bins(logits.softmax(1).numpy(), labels)["ece"],
            calibration_bins(calibration.probabilities(logits).numpy(), labels)["ece"])


def calibration_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of softmax ``probs`` (N, C) against ``labels``: the images binned by their
    top probability into ``bins`` equal-width bins, the count-weighted mean gap between each bin's mean
    confidence and its accuracy. Returns ``ece`` and, per bin, ``count``, ``confidence`` and ``accuracy``."""
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    filled = count > 0
    mean_conf = np.where(filled, conf_sum / np.maximum(count, 1), np.nan)
    mean_acc = np.where(filled, acc_sum / np.maximum(count, 1), np.nan)
    ece = float(np.sum(np.abs(conf_sum - acc_sum)) / max(len(labels), 1))
    return {"ece": ece, "edges": edges.tolist(), "count": count.tolist(),
            "confidence": [None if np.isnan(v) else float(v) for v in mean_conf],
            "accuracy": [None if np.isnan(v) else float(v) for v in mean_acc]}
