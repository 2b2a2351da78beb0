"""Batch mixing: Mixup or CutMix on every batch, with targets mixed in proportion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batch_ops import to_device


@dataclass
class MixedBatch:
    """A mixed batch: images, the two label sets and the weight of the first."""

    images: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    lam: float
    kind: str
    """``mixup``, ``cutmix`` or ``none``."""

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """Per-image target distributions ``lam * onehot(a) + (1 - lam) * onehot(b)``."""
        a = F.one_hot(self.targets_a, num_classes).float()
        b = F.one_hot(self.targets_b, num_classes).float()
        return self.lam * a + (1.0 - self.lam) * b

    def loss(self, logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """``lam * CE(logits, a) + (1 - lam) * CE(logits, b)`` with label smoothing."""
        loss = F.cross_entropy(logits, self.targets_a, label_smoothing=label_smoothing)
        if self.kind == "none":
            return loss
        loss_b = F.cross_entropy(logits, self.targets_b, label_smoothing=label_smoothing)
        return self.lam * loss + (1.0 - self.lam) * loss_b


@dataclass
class MixDraw:
    """One batch's mixing draws: the kind, the partners' permutation (None unmixed), the first label's weight,
    and CutMix's box (y0, y1, x0, x1)."""

    kind: str
    perm: np.ndarray | None
    lam: float
    box: tuple[int, int, int, int] | None = None


def cutmix_box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box (y0, y1, x0, x1) with sides ``sqrt(1 - lam)`` of the image's, centred uniformly, clipped."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


class BatchMixer:
    """Mixes a batch with probability ``prob``: Mixup with probability ``mixup_share``, else CutMix.

    Mixup: lambda ~ Beta(mixup_alpha, mixup_alpha), images blended. CutMix: lambda ~
    Beta(cutmix_alpha, cutmix_alpha), a box pasted from the partner, lambda recomputed from the box's
    clipped area. Partners are a random permutation of the batch. All randomness comes from the
    mixer's own generator, seeded by ``seed``: the trainer makes a mixer per step, seeded by the step, so
    a resumed run mixes exactly as before with no state to save.
    """

    def __init__(self, prob: float = 1.0, mixup_share: float = 0.5, mixup_alpha: float = 0.2,
                 cutmix_alpha: float = 1.0, seed: int = 0) -> None:
        self.prob = prob
        self.mixup_share = mixup_share
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.rng = np.random.default_rng(seed)

    def draw(self, batch: int, height: int, width: int) -> MixDraw:
        """The next batch's draws (kind, partners, weight, box), from the generator in the order mixing uses it."""
        if self.prob <= 0 or self.rng.random() >= self.prob:
            return MixDraw("none", None, 1.0)
        perm = self.rng.permutation(batch)
        if self.rng.random() < self.mixup_share:
            return MixDraw("mixup", perm, float(self.rng.beta(self.mixup_alpha, self.mixup_alpha)))
        lam = float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
        y0, y1, x0, x1 = cutmix_box(lam, height, width, self.rng)
        return MixDraw("cutmix", perm, 1.0 - (y1 - y0) * (x1 - x0) / (height * width), (y0, y1, x0, x1))

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> MixedBatch:
        d = self.draw(images.shape[0], *images.shape[-2:])
        if d.kind == "none":
            return MixedBatch(images, targets, targets, 1.0, "none")
        perm = to_device(torch.from_numpy(d.perm), images.device)
        if d.kind == "mixup":
            mixed = images.mul(d.lam).add_(images[perm], alpha=1.0 - d.lam)
            return MixedBatch(mixed, targets, targets[perm], d.lam, "mixup")
        y0, y1, x0, x1 = d.box
        mixed = images.clone()
        mixed[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
        return MixedBatch(mixed, targets, targets[perm], d.lam, "cutmix")
