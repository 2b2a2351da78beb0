"""The CIFAR-10-C-style corruptions: shapes, determinism, the seed streams, that severity 5 is worse than
severity 1, and the corruptions with a closed form against a direct computation."""

import colorsys
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ghostmixnet.data import corruptions as C
from ghostmixnet.data.corruptions import CORRUPTIONS, RANDOM, SEVERITIES, corrupt


def natural_images(n: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with discs and a rectangle on them and a little noise: edges and flat areas, like
    photographs at CIFAR's scale, unlike uniform noise (on which a blur or a warp changes little on average)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, size)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    out = []
    for _ in range(n):
        a, b = rng.uniform(-1, 1, (2, 3))
        image = 0.5 + 0.125 * (a * xx[..., None] + b * yy[..., None])
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0.05, 0.95, 3)
        top, left = rng.integers(2, size // 2, 2)
        image[top:top + size // 4, left:left + size // 3] = rng.uniform(0.05, 0.95, 3)
        image += rng.normal(0, 0.02, image.shape)
        out.append(np.clip(image * 255, 0, 255).round().astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return natural_images()


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


def test_the_fifteen_in_the_usual_order():
    assert CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                           "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                           "elastic_transform", "pixelate", "jpeg_compression")
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert all(len(C.PARAMETERS[name]) == 5 for name in CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_severity_gives_uint8_of_the_same_shape(images, name):
    for severity in SEVERITIES:
        out = corrupt(images[:3], name, severity)
        assert out.dtype == np.uint8 and out.shape == images[:3].shape, severity
    assert corrupt(images[:0], name, 1).shape == (0, 32, 32, 3)


# Not the elastic transform: its table gives severity 1 the largest affine warp (see the next test).
@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if n != "elastic_transform"])
def test_severity_5_departs_further_than_severity_1(images, name):
    assert mad(corrupt(images, name, 5), images) > mad(corrupt(images, name, 1), images) > 0


def displacement(out: np.ndarray) -> np.ndarray:
    """Where each pixel of a warped coordinate ramp (red = column, green = row) was read, minus where it is."""
    steps = 255 / 31
    ys, xs = np.mgrid[0:32, 0:32]
    return np.stack([out[..., 0] / steps - xs, out[..., 1] / steps - ys], axis=-1)


def test_elastic_severity_5_is_less_affine():
    # A coordinate ramp warped shows the displacement field (bilinear reads of a ramp are exact). Severity 1 is an
    # affine warp of up to 8% of the side at the anchors and nothing else; severity 5 a smaller affine warp (3%)
    # plus the elastic field, so what no affine map explains grows with the severity, while the raw departure
    # from the clean image does not.
    ys, xs = np.mgrid[0:32, 0:32]
    ramp = np.stack([xs * 255 / 31, ys * 255 / 31, np.full((32, 32), 128)], axis=-1).round().astype(np.uint8)
    batch = np.repeat(ramp[None], 16, axis=0)
    centre = (slice(8, 24), slice(8, 24))  # away from the reflected border
    design = np.stack([xs[centre].ravel(), ys[centre].ravel(), np.ones(256)], axis=1)

    def affine_and_rest(severity: int) -> tuple[float, float]:
        """Mean size (pixels) of the best affine fit of the displacements, and the RMS of what it leaves."""
        fields = displacement(corrupt(batch, "elastic_transform", severity))
        affine, rest = [], []
        for field in fields:
            target = field[centre].reshape(-1, 2)
            fit = design @ np.linalg.lstsq(design, target, rcond=None)[0]
            affine.append(np.abs(fit).mean())
            rest.append(np.sqrt(((target - fit) ** 2).mean()))
        return float(np.mean(affine)), float(np.mean(rest))

    (affine_1, rest_1), (affine_5, rest_5) = affine_and_rest(1), affine_and_rest(5)
    assert affine_1 > affine_5 > 0.2
    assert rest_1 < 0.1 and 0.2 < rest_5 < 1.0  # about half a pixel (0.5 measured)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_and_seeded(images, name):
    first = corrupt(images, name, 3, seed=7)
    assert np.array_equal(first, corrupt(images, name, 3, seed=7))
    other = corrupt(images, name, 3, seed=8)
    assert (not np.array_equal(first, other)) if name in RANDOM else np.array_equal(first, other)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_an_image_draws_from_its_own_stream(images, name):
    # Chunks with their start give what the whole batch gives, and an image's draws do not depend on its neighbours.
    whole = corrupt(images, name, 2, seed=3)
    assert np.array_equal(whole[5:], corrupt(images[5:], name, 2, seed=3, start=5))
    assert np.array_equal(whole[:2], corrupt(images[:2], name, 2, seed=3))


def test_each_corruption_and_severity_has_its_own_stream():
    def first_draws(name, severity, seed=0):
        return C.image_streams(name, severity, seed, 1)[0].random(4)

    reference = first_draws("gaussian_noise", 1)
    assert np.array_equal(reference, first_draws("gaussian_noise", 1))
    for other in (first_draws("shot_noise", 1), first_draws("gaussian_noise", 2), first_draws("gaussian_noise", 1, 1)):
        assert not np.allclose(reference, other)
    assert not np.allclose(C.image_streams("snow", 1, 0, 2)[0].random(4), C.image_streams("snow", 1, 0, 2)[1].random(4))
    # the same draws in the corruptions themselves: same images, different noise
    grey = np.full((2, 32, 32, 3), 128, np.uint8)
    assert not np.array_equal(corrupt(grey, "gaussian_noise", 5).astype(int) - 128,
                              corrupt(grey, "shot_noise", 5).astype(int) - 128)


def test_bad_choices_are_refused_with_the_choices(images):
    with pytest.raises(ValueError, match="unknown corruption 'fogg'.*gaussian_noise.*jpeg_compression"):
        corrupt(images, "fogg", 1)
    for severity in (0, 6, 2.5, True, "3"):
        with pytest.raises(ValueError, match="unknown severity.*1, 2, 3, 4, 5"):
            corrupt(images, "fog", severity)
    for seed in (-1, 1.5, None):
        with pytest.raises(ValueError, match="seed"):
            corrupt(images, "fog", 1, seed=seed)
    for bad in (images.astype(np.float32), images[0], images[..., :1], images.tolist()):
        with pytest.raises(ValueError, match=r"uint8 array of shape \(N, H, W, 3\)"):
            corrupt(bad, "fog", 1)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        corrupt(images[:, :4, :4], "fog", 1)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_other_sizes_work(name):
    images = natural_images(2, size=48)[:, :, :40]
    assert corrupt(images, name, 4).shape == (2, 48, 40, 3)


def test_contrast_is_the_formula(images):
    x = images[:2].astype(np.float64) / 255
    mean = x.mean(axis=(1, 2), keepdims=True)  # per image and channel
    for severity, factor in zip(SEVERITIES, C.PARAMETERS["contrast"]):
        expected = np.round(np.clip((x - mean) * factor + mean, 0, 1) * 255)
        assert np.abs(corrupt(images[:2], "contrast", severity) - expected).max() <= 1


def test_brightness_is_the_hsv_round_trip():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    images[0, 0, 0] = 0  # black: no hue, becomes grey
    images[0, 0, 1] = (200, 200, 200)
    lift = C.PARAMETERS["brightness"][4]
    expected = np.empty(images.shape)
    for index in np.ndindex(images.shape[:3]):
        h, s, v = colorsys.rgb_to_hsv(*(images[index] / 255))
        expected[index] = np.array(colorsys.hsv_to_rgb(h, s, min(v + lift, 1.0))) * 255
    assert np.abs(corrupt(images, "brightness", 5) - np.round(expected)).max() <= 1


def test_jpeg_and_pixelate_are_pil(images):
    for severity, quality in zip(SEVERITIES, C.PARAMETERS["jpeg_compression"]):
        buffer = io.BytesIO()
        Image.fromarray(images[0]).save(buffer, format="JPEG", quality=quality)
        assert np.array_equal(corrupt(images[:1], "jpeg_compression", severity)[0], np.asarray(Image.open(buffer)))
    # pixelate: the side truncated, as the published code does (0.65 * 32 = 20.8 -> 20 pixels)
    expected = Image.fromarray(images[0]).resize((20, 20), Image.BOX).resize((32, 32), Image.BOX)
    assert np.array_equal(corrupt(images[:1], "pixelate", 5)[0], np.asarray(expected))


def test_the_noises_have_their_strength():
    grey = np.full((4, 32, 32, 3), 128, np.uint8)  # mid-grey: no clipping
    noise = corrupt(grey, "gaussian_noise", 5).astype(np.float64) - 128
    assert abs(noise.std() / 255 - 0.10) < 0.005 and abs(noise.mean()) < 1
    shot = corrupt(grey, "shot_noise", 5).astype(np.float64) / 255
    expected_std = np.sqrt(128 / 255 / 50)  # Poisson: variance = mean / rate on [0, 1]
    assert abs(shot.std() - expected_std) < 0.01 and abs(shot.mean() - 128 / 255) < 0.01
    changed = corrupt(grey, "impulse_noise", 5) != 128
    assert abs(changed.mean() - 0.07) < 0.01


def test_the_defocus_disk():
    for radius, alias in C.PARAMETERS["defocus_blur"]:
        kernel = C.disk_kernel(radius, alias)
        assert kernel.shape[0] == kernel.shape[1] >= 3 and kernel.shape[0] % 2 == 1
        middle = kernel.shape[0] // 2
        assert np.isclose(kernel.sum(), 1) and np.allclose(kernel, kernel.T) and kernel[middle, middle] == kernel.max()
    # radius 1.5 covers the 3x3 square, about evenly
    centre = C.disk_kernel(1.5, 0.1)[1:-1, 1:-1]
    assert np.allclose(centre, 1 / 9, atol=1e-3)


def test_the_fog_fractal():
    streams = C.image_streams("fog", 1, 0, 3)
    fractal = C.plasma_fractal(streams, 32, 2.0)
    assert fractal.shape == (3, 32, 32) and np.allclose(fractal.min(axis=(1, 2)), 0)
    assert np.allclose(fractal.max(axis=(1, 2)), 1)
    rough, smooth = (C.plasma_fractal(C.image_streams("fog", 1, 0, 8), 32, d) for d in (1.75, 3.0))
    # a smaller decay keeps more fine detail: larger differences between neighbouring points
    assert np.abs(np.diff(rough, axis=2)).mean() > np.abs(np.diff(smooth, axis=2)).mean()
    with pytest.raises(ValueError, match="power of two"):
        C.plasma_fractal(streams, 24, 2.0)


def test_motion_blur_streaks_along_its_angle():
    # One bright pixel, blurred at angle 0: the kernel reads pixels to the right, so the dot spreads to the left.
    dot = np.zeros((1, 1, 16, 16), np.float32)
    dot[0, 0, 8, 8] = 1
    out = C.line_blur(torch.from_numpy(dot), 6, 2, np.array([0.0]))[0, 0].numpy()
    assert out[8, :9].sum() > 0.99 and out[8, 8] == out.max() and np.all(out[8, :8] <= out[8, 1:9])
    assert np.isclose(out.sum(), 1, atol=1e-5)
