"""Each batched operation against torchvision's own kernel, image by image, on the same parameters."""

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from ghostmixnet.data import batch_ops as B


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(12, 3, 8, 8, generator=g), size=32, mode="bilinear")
    noisy = smooth * 200 + torch.rand(12, 3, 32, 32, generator=g) * 55
    out = noisy.to(torch.uint8)
    out[0] = 0  # a black image, and one grey one: the edge cases of contrast, saturation and hue
    out[1] = 128
    return out


def assert_close_uint8(ours, theirs, max_diff=0, share=1.0):
    diff = (ours.int() - theirs.int()).abs()
    assert ours.dtype == theirs.dtype == torch.uint8 and ours.shape == theirs.shape
    assert (diff <= max_diff).float().mean() >= share, f"max diff {int(diff.max())}"


def test_flip_and_padded_crop(images):
    flip = torch.arange(12) % 2 == 0
    top, left = torch.arange(12) % 9, (torch.arange(12) * 5) % 9
    out = B.pad_crop(B.hflip(images, flip), top, left, padding=4)
    for i, img in enumerate(images):
        ref = TF.horizontal_flip(img) if flip[i] else img
        ref = TF.crop(TF.pad(ref, [4]), int(top[i]), int(left[i]), 32, 32)
        assert torch.equal(out[i], ref), i
    assert torch.equal(B.pad_crop(images, top, left, padding=4, flip=flip), out)  # the one-pass form


def test_posterize(images):
    bits = torch.arange(12) % 8 + 1
    out = B.posterize(images, bits)
    for i, img in enumerate(images):
        assert torch.equal(out[i], TF.posterize(img, int(bits[i])))


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_blend_adjustments(images, name):
    factors = torch.linspace(0.0, 2.0, 12)
    ours = getattr(B, f"adjust_{name}")(images, factors)
    for i, img in enumerate(images):
        theirs = getattr(TF, f"adjust_{name}")(img, float(factors[i]))
        assert_close_uint8(ours[i], theirs, max_diff=1, share=0.999)  # float32 rounding at .5 boundaries


def test_hue(images):
    factors = torch.linspace(-0.5, 0.5, 12)
    ours = B.adjust_hue(images, factors)
    for i, img in enumerate(images):
        assert_close_uint8(ours[i], TF.adjust_hue(img, float(factors[i])), max_diff=1, share=0.99)


def test_color_jitter_applies_each_images_own_order(images):
    g = torch.Generator().manual_seed(1)
    factors, order = B.sample_color_jitter(12, g)
    assert sorted(order[0].tolist()) == [0, 1, 2, 3] and len({tuple(o) for o in order.tolist()}) > 1
    ours = B.color_jitter(images, factors, order)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i, img in enumerate(images):
        ref = img
        for op_index in order[i].tolist():
            ref = ops[op_index](ref, float(factors[i, op_index]))
        assert_close_uint8(ours[i], ref, max_diff=2, share=0.99)


def test_color_jitter_sampler_matches_torchvision_ranges():
    g = torch.Generator().manual_seed(2)
    factors, _ = B.sample_color_jitter(4000, g)
    jitter = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)
    low = torch.tensor([jitter.brightness[0], jitter.contrast[0], jitter.saturation[0], jitter.hue[0]])
    high = torch.tensor([jitter.brightness[1], jitter.contrast[1], jitter.saturation[1], jitter.hue[1]])
    assert (factors >= low).all() and (factors <= high).all()
    assert torch.allclose(factors.mean(0), (low + high) / 2, atol=0.01)


def test_perspective_matches_torchvision(images):
    g = torch.Generator().manual_seed(3)
    start, end = B.sample_perspective(12, 32, 32, 0.5, g)
    out = B.perspective(images, B.perspective_coefficients(start, end))
    for i, img in enumerate(images):
        ref = TF.perspective(img, start[i].tolist(), end[i].tolist(), interpolation=T.InterpolationMode.BILINEAR,
                             fill=0)
        assert_close_uint8(out[i], ref, max_diff=1, share=0.995)


def test_perspective_sampler_has_torchvision_support():
    g = torch.Generator().manual_seed(4)
    _, ours = B.sample_perspective(3000, 32, 32, 0.5, g)
    torch.manual_seed(4)
    theirs = torch.tensor([T.RandomPerspective.get_params(32, 32, 0.5)[1] for _ in range(3000)])
    assert torch.equal(ours.amin(0), theirs.amin(0)) and torch.equal(ours.amax(0), theirs.amax(0))
    assert torch.allclose(ours.float().mean(0), theirs.float().mean(0), atol=0.3)


def test_crop_sampler_support():
    top, left = B.sample_crop(2000, 4, torch.Generator().manual_seed(5))
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
