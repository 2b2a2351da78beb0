"""Common corruptions in the manner of CIFAR-10-C: the 15 corruptions of Hendrycks & Dietterich, "Benchmarking
Neural Network Robustness to Common Corruptions and Perturbations" (ICLR 2019), each at five severities, with the
parameters of their CIFAR-10 release (:data:`PARAMETERS`).

The code is this package's own, on numpy, torch and PIL only (no OpenCV, ImageMagick, scikit-image or SciPy), and
works on whole batches. What follows the published recipe exactly: the parameter tables; the noise models; the
defocus disk; contrast and brightness (the latter through an identity that equals the HSV round trip); pixelate's
box resizes; the JPEG qualities. Where it departs, on purpose or because the original leans on a library or a file
this code does not have:

- frost: CIFAR-10-C blends in crops of six frost photographs, which we do not have. A procedural frost texture
  (:func:`frost_texture`) stands in, so frost figures are not comparable with published CIFAR-10-C ones;
- motion blur (and the streaks of snow): ImageMagick's one-sided Gaussian line kernel, but sampled bilinearly at
  sub-pixel steps along the line where ImageMagick rounds each step to a whole pixel, and without the taps whose
  weight is under 1/1000 of the first (they cannot move an 8-bit result);
- glass blur: the published code swaps pixels one at a time in a raster scan; here each iteration is four
  vectorised passes over a 2x2 lattice of sources, whose swap pairs are disjoint (same offsets, same reach);
- zoom blur and the snow layer's zoom: a continuous zoom about the exact centre, where the original crops a
  whole number of pixels and resizes (so on 32 pixels its smallest zooms were no zoom at all);
- elastic transform: both warps reflect at the border about the pixel edge (OpenCV's affine step reflected about
  the edge pixel); fog: our own diamond-square fractal with the original's roughness per level;
- results are rounded to uint8, where the original truncated (a bias of half a grey level).

Randomness: each (corruption, severity) pair has its own stream, seeded from (seed, the corruption's index in
:data:`CORRUPTIONS`, severity); each image draws from its own sub-stream of it, indexed by its position. An image's
corruption therefore depends only on the pair, the seed and its index, never on the rest of the batch: a set
corrupted in chunks (``start``) equals the set corrupted at once.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from math import ceil
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# The CIFAR-10 parameters of the published generator, severity 1 to 5, in the usual order (noise, blur, weather,
# digital). Pixels are on [0, 1]; lengths are in pixels of a 32-pixel image.
PARAMETERS: dict[str, tuple[Any, ...]] = {
    # standard deviation of the added normal noise
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    # Poisson rate: the image times the rate is a photon count
    "shot_noise": (500, 250, 100, 75, 50),
    # share of channel values set to 0 or 1 (salt and pepper, half each)
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    # (disk radius, sigma of the 3x3 Gaussian that anti-aliases the disk)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (Gaussian sigma, largest swap distance, iterations)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (radius, sigma) of the line kernel; these are CIFAR-10's (Tiny ImageNet's are (10, 1) ... (12, 3))
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    # zoom factors np.arange(1, stop, 0.01): 7, 12, 16, 21 and 26 of them
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),
    # (noise mean, noise std, zoom, threshold, streak radius, streak sigma, share of the image kept)
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # (weight of the image, weight of the frost texture)
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (strength, decay): how much fractal is added, and how fast its detail fades with scale
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    # added to the HSV value
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    # factor on each channel's distance from its mean
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # (alpha, sigma, affine) as fractions of the side: 32 x these on CIFAR-10
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)),
    # side of the coarse image as a fraction of the original, truncated to whole pixels
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # PIL JPEG quality
    "jpeg_compression": (80, 65, 58, 50, 40),
}

CORRUPTIONS: tuple[str, ...] = tuple(PARAMETERS)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
MIN_SIDE = 8
"""The smallest image side accepted: below it the elastic transform's anchor points and the glass blur's swap
lattice degenerate."""

_CHUNK = 512  # images corrupted at a time: bounds the memory of the float intermediates, keeps them in cache
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma, the grey of the snow corruption
_NEGLIGIBLE = 1e-3  # line-kernel taps lighter than this share of the first are left out

Generators = Sequence[np.random.Generator]


# ---- randomness ----------------------------------------------------------------------------------------------------

def image_streams(name: str, severity: int, seed: int, count: int, start: int = 0) -> list[np.random.Generator]:
    """The random streams of images ``start`` to ``start + count - 1`` under corruption ``name`` at ``severity``:
    sub-streams of the pair's stream, which is seeded from (seed, index of ``name``, severity)."""
    check_choice(name, severity)
    key = [int(seed), CORRUPTIONS.index(name), int(severity)]
    return [np.random.default_rng(np.random.SeedSequence(key, spawn_key=(start + i,))) for i in range(count)]


def _draw(streams: Generators, draw: Callable[[np.random.Generator], Any]) -> np.ndarray:
    """One draw per image, each from its own stream, stacked along a new first axis."""
    return np.stack([np.asarray(draw(g)) for g in streams])


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


# ---- filtering and resampling --------------------------------------------------------------------------------------

def gaussian_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """A normalised 1-D Gaussian of ``sigma`` reaching ``truncate`` sigmas (rounded), SciPy's convention, so that a
    tiny sigma such as glass blur's 0.05 leaves the image as it is."""
    radius = int(truncate * sigma + 0.5)
    if radius == 0:
        return np.ones(1)
    t = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (t / sigma) ** 2)
    return weights / weights.sum()


def _padded_index(n: int, pad: int, mode: str) -> torch.Tensor:
    """Indices of a length-``n`` axis extended by ``pad`` on each side: ``nearest`` repeats the edge pixel,
    ``symmetric`` mirrors about the pixel edge (d c b a | a b c d), ``reflect`` about the edge pixel
    (d c b | a b c d). Any pad works, even one longer than the axis."""
    i = np.arange(-pad, n + pad)
    if mode == "nearest":
        i = np.clip(i, 0, n - 1)
    elif mode == "symmetric":
        i = np.mod(i, 2 * n)
        i = np.where(i >= n, 2 * n - 1 - i, i)
    elif mode == "reflect":
        period = max(2 * n - 2, 1)
        i = np.mod(i, period)
        i = np.where(i >= n, period - i, i)
    else:
        raise ValueError(f"unknown padding mode {mode!r}")
    return torch.from_numpy(i)


def _filter(x: torch.Tensor, kernel: np.ndarray, mode: str) -> torch.Tensor:
    """Correlate every channel of (N, C, H, W) ``x`` with the 2-D ``kernel`` (odd sides), padded by ``mode``."""
    kh, kw = kernel.shape
    if kh == kw == 1:
        return x * float(kernel[0, 0])
    n, c, h, w = x.shape
    x = x.index_select(2, _padded_index(h, kh // 2, mode)).index_select(3, _padded_index(w, kw // 2, mode))
    # One single-channel convolution over N*C planes: the same kernel for every channel of every image.
    out = F.conv2d(x.reshape(n * c, 1, *x.shape[2:]), _tensor(kernel)[None, None])
    return out.reshape(n, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """Blur each channel of (N, C, H, W) ``x`` by a Gaussian of ``sigma`` pixels, separably."""
    taps = gaussian_taps(sigma, truncate)
    return _filter(_filter(x, taps[:, None], mode), taps[None, :], mode)


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) column and row coordinates of the pixel centres."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return xs, ys


def _sample(x: torch.Tensor, px: torch.Tensor, py: torch.Tensor, padding: str) -> torch.Tensor:
    """``x`` read bilinearly at pixel coordinates (``px``, ``py``) of shape (N, H, W) (pixel centres at whole
    numbers); outside the image ``padding`` says what is read: ``border`` the edge pixel, ``reflection`` the
    image mirrored about its edge, ``zeros`` nothing."""
    n, _, h, w = x.shape
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).expand(n, -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def line_blur(x: torch.Tensor, radius: float, sigma: float, angles: np.ndarray, padding: str = "border",
              normalize: bool = True) -> torch.Tensor:
    """A one-sided motion blur: each output pixel is a Gaussian-weighted sum of the pixels at distances
    0, 1, ..., 2 * ceil(radius) from it along the direction ``angles`` (degrees per image, 0 pointing right,
    90 down), the weight of distance d exp(-d^2 / (2 sigma^2)). This is ImageMagick's kernel (the one
    CIFAR-10-C used) except that a step off the pixel grid is read bilinearly rather than rounded to the nearest
    pixel, and negligible taps are skipped. With ``normalize`` False the weights are not scaled to sum to 1."""
    distances = np.arange(2 * ceil(radius) + 1, dtype=np.float64)
    weights = np.exp(-(distances**2) / (2 * sigma**2))
    keep = weights >= _NEGLIGIBLE * weights[0]
    distances, weights = distances[keep], weights[keep]
    theta = torch.deg2rad(_tensor(angles)).view(-1, 1, 1)
    xs, ys = _pixel_grid(*x.shape[2:])
    out = x * float(weights[0])
    for d, weight in zip(distances[1:], weights[1:]):
        out = out + float(weight) * _sample(x, xs + d * torch.cos(theta), ys + d * torch.sin(theta), padding)
    return out / float(weights.sum()) if normalize else out


def centre_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` magnified ``factor`` times about its centre, bilinearly, cropped to its own size."""
    if factor == 1:
        return x
    h, w = x.shape[2:]
    xs, ys = _pixel_grid(h, w)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return _sample(x, (cx + (xs - cx) / factor)[None], (cy + (ys - cy) / factor)[None], "border")


def _each_image(x: torch.Tensor, change: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """Apply a PIL operation to every image of (N, 3, H, W) ``x`` on [0, 1] (read back as exact uint8)."""
    pixels = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.stack([np.asarray(change(Image.fromarray(p)).convert("RGB")) for p in pixels])
    return _tensor(out).permute(0, 3, 1, 2) / 255


# ---- the corruptions: (N, 3, H, W) float on [0, 1], the severity's parameters, one stream per image -----------------

def _gaussian_noise(x: torch.Tensor, std: float, streams: Generators) -> torch.Tensor:
    return x + std * _tensor(_draw(streams, lambda g: g.standard_normal(x.shape[1:], dtype=np.float32)))


def _shot_noise(x: torch.Tensor, rate: float, streams: Generators) -> torch.Tensor:
    # Photon counts: Poisson with mean image * rate, read back at the same scale; fewer photons, more noise.
    lam = x.double().numpy() * rate
    return _tensor(np.stack([g.poisson(image) for g, image in zip(streams, lam)]) / rate)


def _impulse_noise(x: torch.Tensor, amount: float, streams: Generators) -> torch.Tensor:
    # Each channel value independently: below amount / 2 becomes black (pepper), the next amount / 2 white (salt).
    u = _tensor(_draw(streams, lambda g: g.random(x.shape[1:], dtype=np.float32)))
    return torch.where(u < amount / 2, 0.0, torch.where(u < amount, 1.0, x))


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """A normalised disk of ``radius`` pixels, softened by a 3x3 Gaussian of ``alias_sigma`` (a defocused lens
    without the jagged edge of a pixel disk). At least 3x3: CIFAR's small radii are the centre pixel alone, which
    only the softening spreads."""
    half = ceil(radius) + 1  # one pixel of room for the softening
    t = np.arange(-half, half + 1)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    soft = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_sigma**2))
    soft /= soft.sum()
    # Separable 3-tap blur of the disk, which lies at least one pixel inside the grid, so nothing is cut off.
    padded = np.pad(disk, 1)
    rows = sum(soft[k] * padded[k:k + disk.shape[0], :] for k in range(3))
    kernel = sum(soft[k] * rows[:, k:k + disk.shape[1]] for k in range(3))
    used = np.flatnonzero(kernel.any(axis=0))  # symmetric: the same columns and rows
    return kernel[used[0]:used[-1] + 1, used[0]:used[-1] + 1]


def _defocus_blur(x: torch.Tensor, p: tuple[float, float], streams: Generators) -> torch.Tensor:
    return _filter(x, disk_kernel(*p), "reflect")


def _glass_blur(x: torch.Tensor, p: tuple[float, int, int], streams: Generators) -> torch.Tensor:
    sigma, reach, iterations = p
    x = gaussian_blur(x, sigma)
    n, c, h, w = x.shape
    # Offsets in [-reach, reach), as the published code draws them (so with reach 1 a pixel only trades places
    # with its upper, left or upper-left neighbour, or stays). Sources are the pixels whose swap partner is
    # always inside the image, the original's range.
    offsets = torch.from_numpy(_draw(streams, lambda g: g.integers(-reach, reach, (iterations, 2, h, w))))
    period = 2 * reach  # sources this far apart never share a partner, so one pass can swap them all at once
    flat = x.reshape(n, c, h * w).clone()
    for it in range(iterations):
        for row0 in range(period):
            for col0 in range(period):
                rows = torch.tensor([r for r in range(reach + 1, h - reach + 1) if r % period == row0])
                cols = torch.tensor([q for q in range(reach + 1, w - reach + 1) if q % period == col0])
                if not len(rows) or not len(cols):
                    continue
                r, q = (v.reshape(-1) for v in torch.meshgrid(rows, cols, indexing="ij"))
                dy, dx = offsets[:, it, 0, r, q], offsets[:, it, 1, r, q]
                src = (r * w + q).expand(n, -1)
                dst = (r + dy) * w + (q + dx)
                src, dst = src[:, None].expand(n, c, -1), dst[:, None].expand(n, c, -1)
                a, b = flat.gather(2, src), flat.gather(2, dst)
                flat.scatter_(2, src, b)
                flat.scatter_(2, dst, a)
    return gaussian_blur(flat.reshape(n, c, h, w), sigma)


def _motion_blur(x: torch.Tensor, p: tuple[float, float], streams: Generators) -> torch.Tensor:
    radius, sigma = p
    angles = _draw(streams, lambda g: g.uniform(-45, 45))
    return line_blur(x, radius, sigma, angles)


def _zoom_blur(x: torch.Tensor, stop: float, streams: Generators) -> torch.Tensor:
    # The image averaged with its copies zoomed about the centre; zoom 1 is among the factors, so the sharp image
    # counts twice, as in the original.
    factors = np.arange(1, stop, 0.01)
    total = x.clone()
    for factor in factors:
        total += centre_zoom(x, float(factor))
    return total / (len(factors) + 1)


def _snow(x: torch.Tensor, p: tuple[float, ...], streams: Generators) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, kept = p
    h, w = x.shape[2:]
    flakes = _tensor(_draw(streams, lambda g: g.normal(loc, scale, (1, h, w))))
    angles = _draw(streams, lambda g: g.uniform(-135, -45))  # streaks falling downwards, give or take 45 degrees
    flakes = centre_zoom(flakes, zoom)  # larger flakes
    flakes = torch.where(flakes < threshold, 0.0, flakes).clamp(0, 1)
    flakes = line_blur(flakes, radius, sigma, angles)
    # A snowy scene is lighter and greyer: blend toward a brightened grey (never darker than the pixel).
    grey = sum(k * x[:, i:i + 1] for i, k in enumerate(_LUMA))
    x = kept * x + (1 - kept) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + flakes + flakes.flip(2, 3)  # the layer turned by 180 degrees doubles the flakes


def frost_texture(streams: Generators, h: int, w: int) -> torch.Tensor:
    """A procedural stand-in for the frost photographs of CIFAR-10-C, (N, 3, H, W) on [0, 1], one per stream:
    a dim, cloudy icy haze; thin bright crystal needles, made by smearing sparse thresholded noise along three
    directions 60 degrees apart (ice's hexagonal habit) at a random orientation; and small bright speckles
    (thresholded noise, slightly smoothed). Tinted bluish white like frost on glass. Its mean brightness (about
    0.5) and the density of its needles are our guesses at the photographs' look, not measured from them."""
    coarse = _tensor(_draw(streams, lambda g: g.random((1, max(h // 6, 2), max(w // 6, 2)))))
    seeds = _tensor(_draw(streams, lambda g: g.random((3, h, w))))  # one sparse seed layer per direction
    brightness = _tensor(_draw(streams, lambda g: g.uniform(0.5, 1.0, (3, h, w))))
    spots = _tensor(_draw(streams, lambda g: g.random((1, h, w))))
    orientation = _draw(streams, lambda g: g.uniform(0, 60))
    haze = 0.15 + 0.3 * F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    needles = torch.where(seeds < 0.035, brightness, 0.0)
    # Flat weights (a huge sigma) over 7 pixels: a needle of even brightness behind each seed.
    needles = torch.cat([line_blur(needles[:, k:k + 1], 3, 1e6, orientation + 60 * k, "zeros", normalize=False)
                         for k in range(3)], dim=1).amax(dim=1, keepdim=True)
    speckles = gaussian_blur(torch.where(spots < 0.03, 1.0, 0.0), 0.5)
    texture = (haze + 0.6 * needles.clamp(0, 1) + 0.6 * speckles).clamp(0, 1)
    tint = torch.tensor((0.85, 0.93, 1.0)).view(1, 3, 1, 1)
    return texture * tint


def _frost(x: torch.Tensor, p: tuple[float, float], streams: Generators) -> torch.Tensor:
    image_weight, frost_weight = p
    return image_weight * x + frost_weight * frost_texture(streams, *x.shape[2:])


def plasma_fractal(streams: Generators, size: int, decay: float) -> np.ndarray:
    """(N, size, size) fractal clouds on [0, 1] by the diamond-square method on a torus, ``size`` a power of two.
    Each level halves the grid step: a square's centre takes the mean of its four corners, then each edge's
    midpoint the mean of its two corners and the two centres beside it, each plus a uniform random offset. The
    offsets shrink by ``decay`` squared per level (the published generator's roughness), so a smaller decay
    keeps more fine detail."""
    if size & (size - 1):
        raise ValueError(f"the fractal's size must be a power of two, not {size}")
    offsets = _draw(streams, lambda g: g.uniform(-1, 1, (size, size)))  # one offset per point, drawn at once
    m = np.zeros((len(streams), size, size))
    step, amplitude = size, 1.0
    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        # Square step: sum the four corners of every square (the grid wraps around).
        around = corners + np.roll(corners, -1, axis=1)
        around = around + np.roll(around, -1, axis=2)
        m[:, half::step, half::step] = around / 4 + amplitude * offsets[:, half::step, half::step]
        centres = m[:, half::step, half::step]
        # Diamond step: midpoints of horizontal edges (on corner rows), then of vertical edges (on corner columns).
        m[:, ::step, half::step] = (corners + np.roll(corners, -1, axis=2) + centres + np.roll(centres, 1, axis=1)
                                    ) / 4 + amplitude * offsets[:, ::step, half::step]
        m[:, half::step, ::step] = (corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=2)
                                    ) / 4 + amplitude * offsets[:, half::step, ::step]
        step, amplitude = half, amplitude / decay**2
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / np.maximum(m.max(axis=(1, 2), keepdims=True), 1e-12)


def _fog(x: torch.Tensor, p: tuple[float, float], streams: Generators) -> torch.Tensor:
    strength, decay = p
    h, w = x.shape[2:]
    size = 1 << (max(h, w) - 1).bit_length()  # the smallest power of two that covers the image
    fractal = _tensor(plasma_fractal(streams, size, decay)[:, None, :h, :w])
    # Add the fog, then scale so the brightest pixel keeps its level: fog lifts the darks and flattens contrast.
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * fractal) * peak / (peak + strength)


def _brightness(x: torch.Tensor, lift: float, streams: Generators) -> torch.Tensor:
    # Raising HSV's value V = max(R, G, B) with hue and saturation kept scales R, G and B by V' / V (each is V times
    # a factor of hue and saturation alone): the HSV round trip in one multiplication. A black pixel (V = 0) has
    # no hue and becomes grey V'.
    value = x.amax(dim=1, keepdim=True)
    lifted = (value + lift).clamp(max=1)
    return torch.where(value > 0, x * lifted / value.clamp(min=1e-12), lifted)


def _contrast(x: torch.Tensor, factor: float, streams: Generators) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)  # per image and channel, over all pixels, as the original
    return (x - mean) * factor + mean


def _elastic_transform(x: torch.Tensor, p: tuple[float, float, float], streams: Generators) -> torch.Tensor:
    h, w = x.shape[2:]
    side = min(h, w)
    alpha, sigma, affine = (side * v for v in p)
    xs, ys = _pixel_grid(h, w)
    # A random affine warp: three anchor points around the centre each move by up to ``affine`` pixels per axis.
    cx, cy, s = w // 2, h // 2, side // 3
    anchors = np.array([[cx + s, cy + s], [cx + s, cy - s], [cx - s, cy - s]], dtype=np.float64)
    moved = anchors + _draw(streams, lambda g: g.uniform(-affine, affine, (3, 2)))
    # An output pixel reads the input where the inverse warp takes it: the affine map of moved onto anchors.
    inverse = np.linalg.solve(np.concatenate([moved, np.ones((len(streams), 3, 1))], axis=2),
                              np.broadcast_to(anchors, moved.shape))
    m = _tensor(inverse)[:, :, :, None, None]  # (N, 3 rows: x, y, 1; 2 columns: source x, y, H, W)
    x = _sample(x, xs * m[:, 0, 0] + ys * m[:, 1, 0] + m[:, 2, 0], xs * m[:, 0, 1] + ys * m[:, 1, 1] + m[:, 2, 1],
                "reflection")
    if alpha == 0:
        return x
    # Then a smooth random displacement field: uniform noise blurred by a Gaussian of ``sigma``, times ``alpha``.
    noise = _tensor(_draw(streams, lambda g: g.uniform(-1, 1, (2, h, w))))
    shift = gaussian_blur(noise, sigma, mode="symmetric", truncate=3.0) * alpha
    return _sample(x, xs + shift[:, 0], ys + shift[:, 1], "reflection")


def _pixelate(x: torch.Tensor, factor: float, streams: Generators) -> torch.Tensor:
    h, w = x.shape[2:]
    small = (max(int(w * factor), 1), max(int(h * factor), 1))
    return _each_image(x, lambda im: im.resize(small, Image.BOX).resize((w, h), Image.BOX))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer)


def _jpeg_compression(x: torch.Tensor, quality: int, streams: Generators) -> torch.Tensor:
    return _each_image(x, lambda im: _jpeg(im, quality))


_FUNCTIONS: dict[str, Callable[[torch.Tensor, Any, Generators], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur, "glass_blur": _glass_blur, "motion_blur": _motion_blur, "zoom_blur": _zoom_blur,
    "snow": _snow, "frost": _frost, "fog": _fog,
    "brightness": _brightness, "contrast": _contrast, "elastic_transform": _elastic_transform,
    "pixelate": _pixelate, "jpeg_compression": _jpeg_compression,
}
RANDOM: frozenset[str] = frozenset(CORRUPTIONS) - {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                                                   "jpeg_compression"}
"""The corruptions that draw random numbers (the others ignore the seed)."""


# ---- the entry point ------------------------------------------------------------------------------------------------

def check_choice(name: str, severity: int) -> None:
    """A ValueError naming the choices unless ``name`` is one of :data:`CORRUPTIONS` and ``severity`` one of
    :data:`SEVERITIES`."""
    if name not in PARAMETERS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; choose one of {', '.join(map(str, SEVERITIES))}")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0, *, start: int = 0) -> np.ndarray:
    """``images``, (N, H, W, 3) uint8, under corruption ``name`` (one of :data:`CORRUPTIONS`) at ``severity``
    (1 to 5), as a new (N, H, W, 3) uint8 array. Deterministic given the images, name, severity and ``seed``;
    image i draws from stream ``start + i`` of the pair (see the module's docstring), so corrupting a set in
    chunks, each with its ``start``, gives what corrupting it at once gives. The parameters are CIFAR-10's,
    in pixels of 32-pixel images: other sizes (at least :data:`MIN_SIDE`) work, but a blur of a few pixels is
    milder on larger images."""
    check_choice(name, severity)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError("images must be a uint8 array of shape (N, H, W, 3), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if min(images.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE} pixels on each side, got {images.shape[1:3]}")
    out = np.empty_like(images)
    parameters = PARAMETERS[name][severity - 1]
    with torch.no_grad():
        for i in range(0, len(images), _CHUNK):
            chunk = images[i:i + _CHUNK]
            streams = image_streams(name, severity, seed, len(chunk), start + i)
            x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 255
            y = _FUNCTIONS[name](x, parameters, streams)
            out[i:i + _CHUNK] = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
