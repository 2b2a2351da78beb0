"""Scores in the model's feature space for "none of these classes", fit on training images and stored with the
model.

The energy and maximum-softmax scores read the logits alone, and a closed-set classifier's logits can be large
for an image of none of its classes (it answers "bird" at 0.98 for uniform noise). The penultimate features
keep more: an image of none of the classes lands far from the training images there, or off the subspace they
span. Three scores read them (higher: more like the training images, as energy):

- ``knn``: minus the distance from the L2-normalised feature to its k-th nearest neighbour in a bank of
  normalised training features (Sun et al. 2022);
- ``mahalanobis``: minus the smallest Mahalanobis distance to a class mean, with one covariance shared by the
  classes (Lee et al. 2018);
- ``vim``: the energy minus ``alpha`` times the norm of the feature's part outside the training features'
  principal subspace, ``alpha`` matching the two terms' scales on the training images (Wang et al. 2022).

``knn`` and ``mahalanobis`` read the features averaged over the classifier's 2x2 grid (256 numbers for
GhostMixNet, rather than 1024): a bank or a covariance of that size is small enough to travel in the weights
file. ``vim`` reads the full features, as the classifier does. A :class:`FeatureScore` holds what a score was
fit to, stored as a few half-precision arrays and a JSON dict of settings (:meth:`FeatureScore.arrays`,
:meth:`FeatureScore.settings`), refused when corrupt or of the wrong shape (:meth:`FeatureScore.restore`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError

LOGIT_SCORES = ("energy", "msp")
"""Scores of the logits alone, which every model file and runtime can compute."""
FEATURE_SCORES = ("knn", "mahalanobis", "vim")
"""Scores of the penultimate features, fit on training images (:func:`fit_feature_score`)."""
SCORES = LOGIT_SCORES + FEATURE_SCORES
GRID = 4
RIDGE = 1e-3
"""mahalanobis: added to the covariance's diagonal, in units of the features' mean variance."""
"""Cells of the classifier's pooled grid (2x2) that ``knn`` and ``mahalanobis`` average over."""


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T * logsumexp(logits / T)`` of each row: higher for images of the model's classes (Liu et al. 2020)."""
    return temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The largest softmax probability of each row (Hendrycks and Gimpel 2017)."""
    return (logits.float() / temperature).softmax(1).max(1).values


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(N, C * GRID) features, laid out as the classifier's flattened (C, 2, 2) grid, averaged to (N, C)."""
    n, d = features.shape
    if d % GRID:
        raise ValueError(f"features of width {d} are not a flattened 2x2 grid")
    return features.float().view(n, d // GRID, GRID).mean(2)


def off_subspace(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The norm of each row's part outside the span of ``basis``'s orthonormal columns (subtracted, not found
    from the difference of two squared norms, which loses it to rounding when it is small)."""
    return (x - (x @ basis) @ basis.T).norm(dim=1)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class FeatureScore:
    """A feature-space score and what it was fit to: ``kind`` (one of :data:`FEATURE_SCORES`), its arrays
    (float32 here, half precision in files) and its settings."""

    kind: str
    """``knn``, ``mahalanobis`` or ``vim``."""
    tensors: dict[str, torch.Tensor] = field(repr=False)
    """knn: ``bank`` (M, C) unit rows; mahalanobis: ``means`` (K, C), ``precision`` (C, C); vim: ``origin`` (D,),
    ``basis`` (D, P) orthonormal columns."""
    k: int = 5
    """knn: which neighbour's distance scores (the k-th nearest)."""
    alpha: float = 1.0
    """vim: the weight of the residual norm against the energy."""
    scale: float = 1.0
    """mahalanobis: the pooled features are divided by it (their RMS spread about the class means), so that the
    precision's entries fit half precision."""
    width: int = 0
    """The width of the full features the score reads (D): checked when it is restored and used."""
    images: int = 0
    """How many training images it was fit on."""

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))

    def _problems(self) -> list[str]:
        if self.kind not in FEATURE_SCORES:
            return [f"kind must be one of {FEATURE_SCORES}, got {self.kind!r}"]
        want = {"knn": {"bank": 2}, "mahalanobis": {"means": 2, "precision": 2},
                "vim": {"origin": 1, "basis": 2}}[self.kind]
        if set(self.tensors) != set(want):
            return [f"a {self.kind} score holds arrays {sorted(want)}, got {sorted(self.tensors)}"]
        problems = [f"{name} must have {dims} dimensions, got shape {tuple(self.tensors[name].shape)}"
                    for name, dims in want.items() if self.tensors[name].ndim != dims]
        problems += [f"{name} holds values that are not finite" for name, t in self.tensors.items()
                     if not torch.isfinite(t).all()]
        if problems:
            return problems
        reduced = self.width // GRID
        shapes = {"knn": {"bank": (None, reduced)},
                  "mahalanobis": {"means": (None, reduced), "precision": (reduced, reduced)},
                  "vim": {"origin": (self.width,), "basis": (self.width, None)}}[self.kind]
        for name, shape in shapes.items():
            actual = tuple(self.tensors[name].shape)
            if any(s is not None and s != a for s, a in zip(shape, actual)) or 0 in actual:
                problems.append(f"{name} has shape {actual}, not {tuple('N' if s is None else s for s in shape)} "
                                f"for features of width {self.width}")
        if self.kind == "knn" and not 1 <= self.k <= len(self.tensors["bank"]):
            problems.append(f"k must be between 1 and the bank's {len(self.tensors['bank'])} rows, got {self.k}")
        if not math.isfinite(self.alpha) or self.alpha < 0:
            problems.append(f"alpha must be a finite number at least 0, got {self.alpha}")
        if not math.isfinite(self.scale) or self.scale <= 0:
            problems.append(f"scale must be a positive number, got {self.scale}")
        return problems

    def __call__(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The score of each image from its (N, D) full features and (N, K) logits: higher for images like the
        training images."""
        if features.ndim != 2 or features.shape[1] != self.width:
            raise ValueError(f"the {self.kind} score reads features of width {self.width}, got shape "
                             f"{tuple(features.shape)}")
        f = features.float()
        if self.kind == "knn":
            similarity = unit(pooled(f)) @ self.tensors["bank"].T
            # For unit vectors the distance falls as the cosine similarity rises: the k-th largest similarity
            # gives the k-th nearest distance, sqrt(2 - 2 cos).
            kth = similarity.topk(self.k, dim=1).values[:, -1]
            return -(2 - 2 * kth).clamp_min(0).sqrt()
        if self.kind == "mahalanobis":
            centred = pooled(f)[:, None, :] / self.scale - self.tensors["means"][None]  # (N, K, C)
            distances = torch.einsum("nkc,cd,nkd->nk", centred, self.tensors["precision"], centred)
            return -distances.min(1).values
        return energy(logits) - self.alpha * off_subspace(f - self.tensors["origin"], self.tensors["basis"])

    def settings(self) -> dict[str, Any]:
        """The JSON-able part: everything but the arrays."""
        return {"kind": self.kind, "k": self.k, "alpha": self.alpha, "scale": self.scale, "width": self.width,
                "images": self.images}

    def arrays(self) -> dict[str, torch.Tensor]:
        """The arrays in half precision, as files store them."""
        return {name: t.detach().half().contiguous().cpu() for name, t in self.tensors.items()}

    def size_bytes(self) -> int:
        """What the arrays take in a file (half precision)."""
        return sum(t.numel() * 2 for t in self.tensors.values())

    @classmethod
    def restore(cls, settings: Any, arrays: Any, source: str = "the model") -> FeatureScore:
        """A score from :meth:`settings` and :meth:`arrays` as read back from a file; a :class:`CheckpointError`
        naming ``source`` when they are not a valid one."""
        try:
            if not isinstance(settings, dict) or not isinstance(arrays, dict):
                raise ValueError("its settings and arrays are not maps")
            known = {"kind", "k", "alpha", "scale", "width", "images"}
            if not set(settings) <= known or "kind" not in settings:
                raise ValueError(f"its settings have keys {sorted(settings)}, expected some of {sorted(known)}")
            if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in arrays.values()):
                raise ValueError("its arrays are not all floating-point tensors")
            return cls(tensors={n: t.float() for n, t in arrays.items()}, **settings)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: its out-of-distribution score is invalid ({e}); fit it again with "
                                  "`ghostmixnet calibrate --score`") from None


def fit_feature_score(kind: str, features: torch.Tensor, labels: np.ndarray | torch.Tensor, logits: torch.Tensor,
                      k: int = 5, bank_size: int = 1024, components: int = 64, seed: int = 0) -> FeatureScore:
    """Fit ``kind`` to the (N, D) penultimate ``features``, ``labels`` and ``logits`` of training images. The
    defaults are those ``benchmarks/ood_scores.py`` chose for the shipped weights (MODEL_CARD.md).

    knn keeps ``bank_size`` of the images (a seeded random choice); vim keeps the ``components`` leading
    principal directions of the features around ViM's origin (where the classifier's logits are all zero, found
    here as the features' mean, since the classifier's bias is small)."""
    f = features.float()
    labels = torch.as_tensor(np.asarray(labels)).long()
    if len(f) != len(labels) or len(f) != len(logits) or len(f) < 2:
        raise ValueError(f"fitting needs as many features, labels and logits (at least 2), got {len(f)}, "
                         f"{len(labels)} and {len(logits)}")
    width = f.shape[1]
    if kind == "knn":
        keep = np.sort(np.random.default_rng(seed).choice(len(f), size=min(bank_size, len(f)), replace=False))
        bank = unit(pooled(f[torch.from_numpy(keep)]))
        return FeatureScore("knn", {"bank": bank}, k=min(k, len(bank)), width=width, images=len(f))
    if kind == "mahalanobis":
        p = pooled(f).double()
        classes = labels.unique()
        means = torch.stack([p[labels == c].mean(0) for c in classes])
        centred = p - means[torch.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(p)
        scale = float(covariance.diagonal().mean().sqrt().clamp_min(1e-12))
        # In units of the features' spread, a ridge of RIDGE keeps the inverse finite for features of fewer images
        # than dimensions, and every entry of the precision within 1 / RIDGE: well inside half precision.
        covariance = covariance / scale ** 2 + RIDGE * torch.eye(len(covariance), dtype=torch.float64)
        precision = torch.linalg.inv(covariance)
        return FeatureScore("mahalanobis", {"means": (means / scale).float(), "precision": precision.float()},
                            scale=scale, width=width, images=len(f))
    if kind == "vim":
        origin = f.double().mean(0)
        centred = f.double() - origin
        components = min(components, width - 1, len(f) - 1)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        basis = v[:components].T.contiguous()
        outside = off_subspace(centred, basis)
        # ViM scales the residual so that its mean on the training images equals the mean largest logit.
        alpha = float(logits.float().max(1).values.mean() / outside.mean().clamp_min(1e-12))
        return FeatureScore("vim", {"origin": origin.float(), "basis": basis.float()}, alpha=max(alpha, 0.0),
                            width=width, images=len(f))
    raise ValueError(f"unknown feature score {kind!r}; choose one of {', '.join(FEATURE_SCORES)}")
