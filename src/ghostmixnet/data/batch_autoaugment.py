"""AutoAugment's CIFAR-10 policy on a whole uint8 batch, each image with its own sub-policy draw.

The policy (Cubuk et al., 2019, found by search on CIFAR-10) is 25 sub-policies of two operations,
each with a probability and a magnitude level 0..9. Per image: one sub-policy uniformly, then each of
its operations applied with its probability; signed magnitudes get a random sign. Images that share
an operation are processed together. Operations follow torchvision's tensor kernels (nearest
interpolation and zero fill for the geometric ones, as torchvision's AutoAugment defaults).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch_ops import adjust_brightness, adjust_contrast, adjust_saturation, posterize, to_device

# One line per sub-policy: "op probability level" twice; "-" for operations without a magnitude.
_CIFAR10 = """
Invert 0.1 - ; Contrast 0.2 6
Rotate 0.7 2 ; TranslateX 0.3 9
Sharpness 0.8 1 ; Sharpness 0.9 3
ShearY 0.5 8 ; TranslateY 0.7 9
AutoContrast 0.5 - ; Equalize 0.9 -
ShearY 0.2 7 ; Posterize 0.3 7
Color 0.4 3 ; Brightness 0.6 7
Sharpness 0.3 9 ; Brightness 0.7 9
Equalize 0.6 - ; Equalize 0.5 -
Contrast 0.6 7 ; Sharpness 0.6 5
Color 0.7 7 ; TranslateX 0.5 8
Equalize 0.3 - ; AutoContrast 0.4 -
TranslateY 0.4 3 ; Sharpness 0.2 6
Brightness 0.9 6 ; Color 0.2 8
Solarize 0.5 2 ; Invert 0.0 -
Equalize 0.2 - ; AutoContrast 0.6 -
Equalize 0.2 - ; Equalize 0.6 -
Color 0.9 9 ; Equalize 0.6 -
AutoContrast 0.8 - ; Solarize 0.2 8
Brightness 0.1 3 ; Color 0.7 0
Solarize 0.4 5 ; AutoContrast 0.9 -
TranslateY 0.9 9 ; TranslateY 0.7 9
AutoContrast 0.9 - ; Solarize 0.8 3
Equalize 0.8 - ; Invert 0.1 -
TranslateY 0.7 9 ; AutoContrast 0.9 -
"""


def _parse(table: str) -> tuple[tuple[tuple[str, float, int | None], ...], ...]:
    policies = []
    for line in table.strip().splitlines():
        ops = []
        for part in line.split(";"):
            name, prob, level = part.split()
            ops.append((name, float(prob), None if level == "-" else int(level)))
        policies.append(tuple(ops))
    return tuple(policies)


CIFAR10_POLICY = _parse(_CIFAR10)
OPERATIONS = tuple(sorted({name for sub in CIFAR10_POLICY for name, _, _ in sub}))
# Per slot of a sub-policy: operation index, probability and level (0 where none) of each sub-policy, as
# tensors, so that a batch's draws are looked up at once rather than image by image.
_SLOT_TABLES = tuple(
    (torch.tensor([OPERATIONS.index(sub[slot][0]) for sub in CIFAR10_POLICY]),
     torch.tensor([sub[slot][1] for sub in CIFAR10_POLICY]),
     torch.tensor([sub[slot][2] or 0 for sub in CIFAR10_POLICY]))
    for slot in range(2))


def magnitudes(size: tuple[int, int], levels: int = 10) -> dict[str, tuple[torch.Tensor, bool]]:
    """Per operation: the magnitude of each level and whether it takes a random sign."""
    h, w = size
    signed = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 150.0 / 331.0 * w, "TranslateY": 150.0 / 331.0 * h,
              "Rotate": 30.0, "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}
    table = {name: (torch.linspace(0.0, top, levels), True) for name, top in signed.items()}
    table["Posterize"] = (8 - (torch.arange(levels) / ((levels - 1) / 4)).round().int(), False)
    table["Solarize"] = (torch.linspace(255.0, 0.0, levels), False)
    for name in ("AutoContrast", "Equalize", "Invert"):
        table[name] = (torch.tensor(0.0), False)
    return table


def inverse_affine(angle: torch.Tensor, translate: torch.Tensor, shear: torch.Tensor,
                   center: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) matrices mapping output to input coordinates (origin at the image centre) for a
    rotation by ``angle`` degrees, a translation (N, 2) in pixels and shears (N, 2) in degrees about
    ``center`` (N, 2), composed as torchvision composes them (scale 1)."""
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear[:, 0]), torch.deg2rad(shear[:, 1])
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m = torch.stack((d, -b, torch.zeros_like(d), -c, a, torch.zeros_like(d)), 1)
    cx, cy = center[:, 0], center[:, 1]
    tx, ty = translate[:, 0], translate[:, 1]
    m[:, 2] = m[:, 0] * (-cx - tx) + m[:, 1] * (-cy - ty) + cx
    m[:, 5] = m[:, 3] * (-cx - tx) + m[:, 4] * (-cy - ty) + cy
    return m.view(-1, 2, 3)


def affine_nearest(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Warp each image by its inverse affine matrix (nearest neighbour, zeros outside)."""
    n, _, h, w = images.shape
    dev = images.device
    xs = torch.arange(w, device=dev, dtype=torch.float32) - w * 0.5 + 0.5
    ys = torch.arange(h, device=dev, dtype=torch.float32) - h * 0.5 + 0.5
    base = torch.stack((xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w, device=dev)), -1)
    theta = to_device(matrices, dev, torch.float32).transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=dev)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta).view(n, h, w, 2)
    out = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


def adjust_sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a 3x3 smoothing of the image (borders kept), per-image factor, as torchvision's
    AutoAugment computes it."""
    c = images.shape[1]
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=images.device) / 13.0
    x = images.float()
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = F.conv2d(x, kernel.expand(c, 1, 3, 3), groups=c).round_()
    ratio = to_device(factor, images.device, torch.float32).view(-1, 1, 1, 1)
    complement = to_device(1.0 - factor.double(), images.device, torch.float32).view(-1, 1, 1, 1)
    return (ratio * x + complement * degenerate).clamp_(0, 255).to(torch.uint8)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to the full 0..255 range (flat channels are left alone)."""
    x = images.float()
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = torch.where(flat, torch.ones_like(high), 255.0 / torch.where(flat, torch.ones_like(high), high - low))
    low = torch.where(flat, torch.zeros_like(low), low)
    return ((x - low) * scale).clamp_(0, 255).to(torch.uint8)


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(images >= to_device(threshold, images.device).view(-1, 1, 1, 1), ~images, images)


def apply_op(name: str, images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """One AutoAugment operation on a batch, ``magnitude`` per image (already signed)."""
    n, _, h, w = images.shape
    zeros = torch.zeros(n)
    factor = 1.0 + magnitude.double()  # in double, as torchvision computes 1.0 + magnitude in Python
    if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        angle, translate, shear, center = zeros, torch.zeros(n, 2), torch.zeros(n, 2), torch.zeros(n, 2)
        if name.startswith("Shear"):
            shear[:, 0 if name == "ShearX" else 1] = torch.rad2deg(torch.atan(magnitude))
            center = torch.tensor([[-w * 0.5, -h * 0.5]]).expand(n, 2)  # shear about the top-left corner
        elif name.startswith("Translate"):
            translate[:, 0 if name == "TranslateX" else 1] = magnitude.trunc()
        else:
            angle = -magnitude  # torchvision's rotate turns counter-clockwise for positive angles
        return affine_nearest(images, inverse_affine(angle, translate, shear, center))
    # torchvision is imported when first needed: importing it costs every command about a second.
    from torchvision.transforms.v2 import functional as TF

    ops = {"Brightness": lambda: adjust_brightness(images, factor),
           "Color": lambda: adjust_saturation(images, factor),
           "Contrast": lambda: adjust_contrast(images, factor),
           "Sharpness": lambda: adjust_sharpness(images, factor),
           "Posterize": lambda: posterize(images, magnitude.int()),
           "Solarize": lambda: solarize(images, magnitude),
           "AutoContrast": lambda: autocontrast(images),
           "Equalize": lambda: TF.equalize(images),  # torchvision's kernel is batched already
           "Invert": lambda: TF.invert(images)}
    if name not in ops:
        raise ValueError(f"unknown AutoAugment operation {name!r}")
    return ops[name]()


def sample_autoaugment(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per image: a sub-policy index, the two uniform draws compared with its probabilities, and two
    signs (1 keeps the magnitude positive), as torchvision's AutoAugment draws them."""
    return {"policy": torch.randint(len(CIFAR10_POLICY), (n,), generator=generator),
            "probs": torch.rand(n, 2, generator=generator),
            "signs": torch.randint(2, (n, 2), generator=generator)}


def autoaugment(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply each image's sub-policy: operation 1 then operation 2, each if its draw passes."""
    n, _, h, w = images.shape
    space = magnitudes((h, w))
    policy, probs, signs = params["policy"].cpu(), params["probs"].cpu(), params["signs"].cpu()
    skip = len(OPERATIONS)  # the group of images whose draw says "not this time"
    # As in color_jitter: before each slot the batch is reordered so that the images applying the same
    # operation are one contiguous slice (the draws stay on the CPU, the images on their device).
    out, held = images, torch.arange(n)  # held[i]: original index of row i
    for slot in range(2):
        op, prob, level = (t[policy[held]] for t in _SLOT_TABLES[slot])
        group = torch.where(probs[held, slot] <= prob, op, skip)
        regroup = group.argsort(stable=True)
        group, level, held = group[regroup], level[regroup], held[regroup]
        out = out[to_device(regroup, out.device)]
        start = 0
        for k, count in enumerate(torch.bincount(group, minlength=skip + 1).tolist()[:skip]):
            if not count:
                continue
            rows = slice(start, start + count)
            start += count
            name = OPERATIONS[k]
            values, is_signed = space[name]
            magnitude = values[level[rows]].float() if values.ndim else torch.zeros(count)
            if is_signed:
                magnitude = torch.where(signs[held[rows], slot] == 0, -magnitude, magnitude)
            out[rows] = apply_op(name, out[rows], magnitude)
    result = torch.empty_like(out)
    result[to_device(held, out.device)] = out
    return result
