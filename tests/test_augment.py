"""The training pipeline's order and parameters, asserted against the reference recipe."""

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from ghostmixnet.augment import eval_transform, train_transform
from ghostmixnet.data import MEAN, STD
from ghostmixnet.engine import normalize_uint8


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
