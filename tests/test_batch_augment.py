"""Each batched operation against torchvision's own kernel, image by image, on the same parameters."""

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from ghostmixnet import batch_augment as B


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


@pytest.mark.parametrize("augment", ["paper", "basic", "none"])
def test_pipeline_is_seeded_and_keeps_shape(images, augment):
    pipeline = B.BatchPipeline(augment)
    a = pipeline(images, torch.Generator().manual_seed(7))
    b = pipeline(images, torch.Generator().manual_seed(7))
    c = pipeline(images, torch.Generator().manual_seed(8))
    assert a.shape == images.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert torch.equal(a, images) if augment == "none" else not torch.equal(a, c)
    x = B.normalize(a, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.dtype == torch.float32 and x.min() >= -2.0 and x.max() <= 2.0
    with pytest.raises(ValueError, match="unknown augmentation"):
        B.BatchPipeline("heavy")


def test_compiled_colour_operations_agree_with_eager(images):
    # Compiled kernels may round differently in the last float bit; after uint8 truncation that is at
    # most one level, in a small share of values.
    eager, compiled = B.BatchPipeline("paper"), B.BatchPipeline("paper", compile=True)
    for seed in (0, 1):  # a second call, with other subset sizes, reuses the dynamic-shape kernels
        a = eager(images, torch.Generator().manual_seed(seed))
        b = compiled(images, torch.Generator().manual_seed(seed))
        assert_close_uint8(b, a, max_diff=1, share=0.99)


@pytest.mark.parametrize("augment", ["paper", "basic", "none"])
def test_batches_augmented_in_chunks_come_out_as_alone(images, augment):
    pipeline = B.BatchPipeline(augment)
    batches = [(images[i:i + 4], torch.arange(i, i + 4)) for i in range(0, 12, 4)] + [(images[:2], torch.arange(2))]

    def draws(i):
        return torch.Generator().manual_seed(100 + i)

    alone = [(B.normalize(pipeline(x, draws(i)), (0.5,) * 3, (0.25,) * 3), y) for i, (x, y) in enumerate(batches)]
    for chunk in (1, 3, 8):
        chunked = list(B.augment_in_chunks(batches, pipeline, chunk, draws, (0.5,) * 3, (0.25,) * 3))
        assert len(chunked) == len(alone)
        for (x, y), (want_x, want_y) in zip(chunked, alone):
            assert torch.equal(x, want_x) and torch.equal(y, want_y)


def test_augment_chunk_is_chosen_by_device():
    assert B.resolve_augment_chunk(None, torch.device("cpu")) == 1
    assert B.resolve_augment_chunk(None, torch.device("cuda")) == B.CUDA_AUGMENT_CHUNK
    assert B.resolve_augment_chunk(5, torch.device("cuda")) == 5
