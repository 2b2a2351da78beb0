"""Augmentations applied to a whole uint8 batch at once, with per-image random parameters.

Each operation computes what torchvision's tensor kernel computes for one image (same formulas,
same uint8 rounding), but for a batch whose images each have their own parameters, on whatever
device the batch is on. Samplers draw the parameters from the distributions torchvision's
transforms use. Tests compare every operation with torchvision's on the same parameters.

Images are (N, 3, H, W) uint8 tensors throughout; parameters are tensors with one entry per image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


def to_device(values: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``values`` on ``device`` (in ``dtype`` if given) without making the host wait for a GPU.

    Parameters are drawn on the host. A plain copy from ordinary (pageable) host memory to a CUDA device
    synchronizes the stream, so each one would drain the GPU's queue of work; staged in pinned memory,
    the copy is queued like a kernel and the host goes on launching. Elsewhere this is ``Tensor.to``.
    """
    if values.device.type == "cpu" and torch.device(device).type == "cuda":
        if dtype is not None:
            values = values.to(dtype)  # convert on the host, where the values are
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device) if dtype is None else values.to(device, dtype)


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A length-N parameter shaped to broadcast over (N, C, H, W), as float32 on ``like``'s device."""
    return to_device(values, like.device, torch.float32).view(-1, 1, 1, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 255] and truncate, as torchvision's blend does for uint8 images."""
    return x.clamp_(0, 255).to(torch.uint8)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float luma, floored as torchvision does for integer images."""
    r, g, b = images.float().unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).floor_().unsqueeze(1)


def blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``ratio * images + (1 - ratio) * other`` per image, clamped and truncated to uint8."""
    # 1 - ratio in double, then float32: what Python-float arithmetic gives torchvision's kernels.
    r, complement = _per_image(ratio, images), _per_image(1.0 - ratio.double(), images)
    return _to_uint8(images.float() * r + other * complement)


def hflip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` is true."""
    return torch.where(to_device(flip, images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def pad_crop(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, padding: int,
             flip: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then cut each image's H x W window at (top, left); with
    ``flip``, the images whose entry is true are mirrored first (as ``hflip`` then this), in the same pass."""
    n, c, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding,) * 4)
    wide = w + 2 * padding
    rows = to_device(top, dev).view(n, 1, 1) + torch.arange(h, device=dev).view(1, h, 1)
    cols = to_device(left, dev).view(n, 1, 1) + torch.arange(w, device=dev).view(1, 1, w)
    if flip is not None:
        # Mirroring then cropping at column `left` reads the padded original from its right edge.
        cols = torch.where(to_device(flip, dev).view(n, 1, 1), wide - 1 - cols, cols)
    index = (rows * wide + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.view(n, c, -1).gather(2, index).view(n, c, h, w)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits of every channel (per image; 8 leaves an image unchanged)."""
    mask = (((1 << bits.to(torch.int32)) - 1) << (8 - bits.to(torch.int32))).to(torch.uint8)
    return images & to_device(mask, images.device).view(-1, 1, 1, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, torch.zeros((), device=images.device), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(images, grayscale(images), factor)


def adjust_hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``factor`` (in turns, within [-0.5, 0.5]), as torchvision's kernel.

    torchvision goes RGB -> HSV -> RGB in [0, 1]. The round trip is done here in fewer passes, with
    the same formulas: value is the largest channel and value * saturation is the chroma (largest
    minus smallest), hue is kept in sixths of a turn, and channel k (5, 3, 1 for red, green, blue)
    comes back as value - chroma * clamp(min(m, 4 - m), 0, 1) with m = (k + 6 hue) mod 6.
    """
    x = images.float()
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    chroma = maxc - minc
    r_max = maxc == r
    g_max = (maxc == g) & ~r_max
    # The hue sector's offset and position within it, in sixths of a turn (torchvision's three cases).
    sector = torch.where(r_max, g - b, torch.where(g_max, b - r, r - g))
    offset = torch.where(r_max, 0.0, torch.where(g_max, 2.0, 4.0))
    sixths = offset + sector / torch.where(chroma == 0, 1.0, chroma)
    sixths = (sixths + 6.0 * to_device(factor, images.device, torch.float32).view(-1, 1, 1)).remainder_(6.0)
    k = torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1)
    m = (k + sixths.unsqueeze(1)).remainder_(6.0)
    rgb = maxc.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(m, 4.0 - m).clamp_(0.0, 1.0)
    # torchvision converts its [0, 1] result to uint8 by scaling with 255.999 and truncating.
    return rgb.mul_((255.0 + 1.0 - 1e-3) / 255.0).to(torch.uint8)


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 ops: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] | None = None) -> torch.Tensor:
    """Brightness, contrast, saturation and hue (``factors`` (N, 4), in that column order), each image
    applying them in its own order (``order`` (N, 4), a permutation of 0..3 per row), as ColorJitter.
    ``ops`` replaces the four functions (e.g. by compiled ones); default :data:`COLOR_OPS`."""
    dev = images.device
    # The plan (which rows go where) is made on the host, where the draws are: reading group sizes
    # off a GPU would make the host wait for it at every position.
    order, factors = order.cpu(), factors.cpu()
    ops = ops or COLOR_OPS
    # Before each of the four positions the batch is reordered so that the images applying the same
    # operation there are one contiguous slice: four gathers in all, rather than a gather and a
    # scatter per (position, operation), and slices the operations read without copying.
    out, held = images, torch.arange(len(images))  # held[i]: original index of row i
    for position in range(4):
        op_of_row = order[held, position]
        regroup = op_of_row.argsort(stable=True)
        out, held = out[to_device(regroup, dev)], held[regroup]
        rows_factors = to_device(factors[held], dev)
        start = 0
        for op_index, count in enumerate(torch.bincount(op_of_row, minlength=len(ops)).tolist()):
            if count:
                rows = slice(start, start + count)
                out[rows] = ops[op_index](out[rows], rows_factors[rows, op_index])
                start += count
    result = torch.empty_like(out)
    result[to_device(held, dev)] = out
    return result


def perspective_coefficients(startpoints: torch.Tensor, endpoints: torch.Tensor) -> torch.Tensor:
    """(N, 8) coefficients of the homographies taking each image's ``endpoints`` (N, 4, 2) to its
    ``startpoints``: for an output pixel, where to sample the input (as torchvision solves them)."""
    s, e = startpoints.double(), endpoints.double()
    n = s.shape[0]
    a = torch.zeros(n, 8, 8, dtype=torch.float64, device=s.device)
    ex, ey, sx, sy = e[..., 0], e[..., 1], s[..., 0], s[..., 1]
    a[:, 0::2, 0], a[:, 0::2, 1], a[:, 0::2, 2] = ex, ey, 1.0
    a[:, 0::2, 6], a[:, 0::2, 7] = -sx * ex, -sx * ey
    a[:, 1::2, 3], a[:, 1::2, 4], a[:, 1::2, 5] = ex, ey, 1.0
    a[:, 1::2, 6], a[:, 1::2, 7] = -sy * ex, -sy * ey
    b = s.reshape(n, 8)
    return torch.linalg.solve(a, b).float()


def perspective(images: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Warp each image by its homography (bilinear, zero fill), as torchvision's tensor kernel."""
    n, c, h, w = images.shape
    dev = images.device
    k = to_device(coefficients, dev, torch.float32)
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32) + 0.5,
                            torch.arange(w, device=dev, dtype=torch.float32) + 0.5, indexing="ij")
    x, y = xs.view(1, h, w), ys.view(1, h, w)
    c0, c1, c2, c3, c4, c5, c6, c7 = (k[:, i].view(n, 1, 1) for i in range(8))
    denom = c6 * x + c7 * y + 1.0
    gx = (c0 * x + c1 * y + c2) / denom / (0.5 * w) - 1.0
    gy = (c3 * x + c4 * y + c5) / denom / (0.5 * h) - 1.0
    grid = torch.stack((gx, gy), -1)
    # A channel of ones, warped alongside, says how much of each output pixel came from inside the image.
    warped = F.grid_sample(torch.cat((images.float(), torch.ones(n, 1, h, w, device=dev)), 1), grid,
                           mode="bilinear", padding_mode="zeros", align_corners=False)
    pixels, mask = warped[:, :c], warped[:, c:]
    return (pixels * mask).round_().to(torch.uint8)


# ---- parameter samplers: the distributions of torchvision's transforms, one draw per image ----

def sample_crop(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """RandomCrop(size, padding): top and left offsets uniform in 0..2*padding."""
    return (torch.randint(0, 2 * padding + 1, (n,), generator=generator),
            torch.randint(0, 2 * padding + 1, (n,), generator=generator))


def sample_color_jitter(n: int, generator: torch.Generator, brightness: float = 0.2, contrast: float = 0.2,
                        saturation: float = 0.2, hue: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """ColorJitter: factors uniform in [1 - x, 1 + x] (hue in [-hue, hue]) and a random order per image."""
    u = torch.rand(n, 4, generator=generator)
    low = torch.tensor([1 - brightness, 1 - contrast, 1 - saturation, -hue])
    high = torch.tensor([1 + brightness, 1 + contrast, 1 + saturation, hue])
    order = torch.rand(n, 4, generator=generator).argsort(1)
    return low + u * (high - low), order


def sample_perspective(n: int, height: int, width: int, distortion: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """RandomPerspective: corners moved inwards by up to ``distortion`` of half the side, as
    torchvision draws them; returns (startpoints, endpoints), each (N, 4, 2) as (x, y)."""
    dx, dy = int(distortion * (width // 2)), int(distortion * (height // 2))

    def draw(low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator)

    end = torch.stack([
        torch.stack((draw(0, dx + 1), draw(0, dy + 1)), 1),
        torch.stack((draw(width - dx - 1, width), draw(0, dy + 1)), 1),
        torch.stack((draw(width - dx - 1, width), draw(height - dy - 1, height)), 1),
        torch.stack((draw(0, dx + 1), draw(height - dy - 1, height)), 1),
    ], 1)
    start = torch.tensor([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]).expand(n, 4, 2)
    return start, end


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, 3, H, W) to float, scaled to [0, 1] and normalized per channel (as ToTensor + Normalize)."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255) - m) / s
