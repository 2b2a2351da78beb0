"""Normalisation constants measured on a training set."""

import numpy as np
import pytest

from ghostmixnet.data.cifar import MEAN, STD, load_cifar10
from ghostmixnet.data.stats import channel_stats


def test_stats_equal_numpys_over_every_pixel_whatever_the_chunk():
    images = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=5)
    pixels = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(images.astype(np.float32))


def test_cifar10s_constants_are_its_training_sets_stats(real_data_dir):
    mean, std = channel_stats(load_cifar10(real_data_dir, train=True).images)
    np.testing.assert_allclose(mean, MEAN, atol=5e-5)
    np.testing.assert_allclose(std, STD, atol=5e-5)
