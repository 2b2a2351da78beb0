"""The training pipeline's order and parameters, asserted against the reference recipe."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_batch_ops import assert_close_uint8
from torchvision import transforms as T

from ghostmixnet.data import augment as A
from ghostmixnet.data.augment import eval_transform, train_transform
from ghostmixnet.data.batch_ops import normalize
from ghostmixnet.data.cifar import MEAN, STD
from ghostmixnet.infer.logits import normalize_uint8


def test_paper_pipeline_order_and_parameters():
    steps = train_transform("paper").transforms
    assert [type(s) for s in steps] == [T.RandomHorizontalFlip, T.RandomCrop, T.RandomPerspective,
                                        T.RandomPosterize, T.ColorJitter, T.AutoAugment, T.ToTensor, T.Normalize]
    flip, crop, persp, post, jitter, auto, _, norm = steps
    assert flip.p == 0.5
    assert crop.size == (32, 32) and crop.padding == 4
    assert persp.distortion_scale == 0.5 and persp.p == 0.5
    assert post.bits == 4 and post.p == 0.4
    assert jitter.brightness == (0.8, 1.2) and jitter.contrast == (0.8, 1.2)
    assert jitter.saturation == (0.8, 1.2) and jitter.hue == (-0.1, 0.1)
    assert auto.policy == T.AutoAugmentPolicy.CIFAR10
    assert tuple(norm.mean) == MEAN and tuple(norm.std) == STD


def test_basic_and_none_pipelines():
    assert [type(s) for s in train_transform("basic").transforms] == [
        T.RandomHorizontalFlip, T.RandomCrop, T.ToTensor, T.Normalize]
    assert [type(s) for s in train_transform("none").transforms] == [T.ToTensor, T.Normalize]
    assert [type(s) for s in eval_transform().transforms] == [T.ToTensor, T.Normalize]


def test_training_output_is_a_normalized_tensor():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    out = train_transform("paper")(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_batched_eval_normalization_equals_the_transform():
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    per_image = torch.stack([eval_transform()(Image.fromarray(im)) for im in images])
    assert torch.equal(normalize_uint8(images, torch.device("cpu")), per_image)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(12, 3, 8, 8, generator=g), size=32, mode="bilinear")
    return (smooth * 200 + torch.rand(12, 3, 32, 32, generator=g) * 55).to(torch.uint8)


def test_both_backends_read_one_recipe_table():
    flip, crop, warp, posterize, jitter, _ = train_transform("paper").transforms[:6]
    r = A.PAPER
    assert (flip.p, crop.padding, warp.distortion_scale, warp.p) == (r.flip, r.pad, r.perspective_distortion,
                                                                    r.perspective_p)
    assert (posterize.bits, posterize.p) == (r.posterize_bits, r.posterize_p)
    assert (jitter.brightness[1] - 1, jitter.hue[1]) == pytest.approx((r.jitter[0], r.jitter[3]))
    params = A.BatchPipeline("paper").sample(20000, torch.Generator().manual_seed(0))
    assert params["flip"].float().mean() == pytest.approx(r.flip, abs=0.02)
    assert params["top"].max() == 2 * r.pad
    assert params["warp"].float().mean() == pytest.approx(r.perspective_p, abs=0.02)
    assert (params["bits"] == r.posterize_bits).float().mean() == pytest.approx(r.posterize_p, abs=0.02)


@pytest.mark.parametrize("augment", ["paper", "basic", "none"])
def test_pipeline_is_seeded_and_keeps_shape(images, augment):
    pipeline = A.BatchPipeline(augment)
    a = pipeline(images, torch.Generator().manual_seed(7))
    b = pipeline(images, torch.Generator().manual_seed(7))
    c = pipeline(images, torch.Generator().manual_seed(8))
    assert a.shape == images.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert torch.equal(a, images) if augment == "none" else not torch.equal(a, c)
    x = normalize(a, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.dtype == torch.float32 and x.min() >= -2.0 and x.max() <= 2.0
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.BatchPipeline("heavy")


def test_compiled_colour_operations_agree_with_eager(images):
    # Compiled kernels may round differently in the last float bit; after uint8 truncation that is at
    # most one level, in a small share of values.
    eager, compiled = A.BatchPipeline("paper"), A.BatchPipeline("paper", compile=True)
    for seed in (0, 1):  # a second call, with other subset sizes, reuses the dynamic-shape kernels
        a = eager(images, torch.Generator().manual_seed(seed))
        b = compiled(images, torch.Generator().manual_seed(seed))
        assert_close_uint8(b, a, max_diff=1, share=0.99)


@pytest.mark.parametrize("augment", ["paper", "basic", "none"])
def test_batches_augmented_in_chunks_come_out_as_alone(images, augment):
    pipeline = A.BatchPipeline(augment)
    batches = [(images[i:i + 4], torch.arange(i, i + 4)) for i in range(0, 12, 4)] + [(images[:2], torch.arange(2))]

    def draws(i):
        return torch.Generator().manual_seed(100 + i)

    alone = [(normalize(pipeline(x, draws(i)), (0.5,) * 3, (0.25,) * 3), y) for i, (x, y) in enumerate(batches)]
    for chunk in (1, 3, 8):
        chunked = list(A.augment_in_chunks(batches, pipeline, chunk, draws, (0.5,) * 3, (0.25,) * 3))
        assert len(chunked) == len(alone)
        for (x, y), (want_x, want_y) in zip(chunked, alone):
            assert torch.equal(x, want_x) and torch.equal(y, want_y)


@pytest.mark.parametrize("augment", ["basic", "paper"])
def test_both_backends_augment_other_sizes_with_the_padding_in_proportion(augment):
    assert [A.padding(s) for s in (16, 32, 48, 64, 96)] == [2, 4, 6, 8, 12]
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    out = A.BatchPipeline(augment)(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    params = A.BatchPipeline(augment).sample(500, torch.Generator().manual_seed(0), (64, 64))
    assert int(params["top"].max()) == 16  # offsets 0..2*8
    transform = train_transform(augment, size=64)
    assert transform(Image.fromarray(images[0].permute(1, 2, 0).numpy())).shape == (3, 64, 64)
    assert next(t for t in transform.transforms if isinstance(t, T.RandomCrop)).padding == 8


def test_augment_chunk_is_chosen_by_device():
    assert A.resolve_augment_chunk(None, torch.device("cpu")) == 1
    assert A.resolve_augment_chunk(None, torch.device("cuda")) == A.CUDA_AUGMENT_CHUNK
    assert A.resolve_augment_chunk(5, torch.device("cuda")) == 5
