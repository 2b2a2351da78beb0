import pytest
import torch

from ghostmixnet.config import make_config
from ghostmixnet.data.cifar import load_cifar10
from ghostmixnet.device import resolve_precision
from ghostmixnet.train.throughput import training_throughput


@pytest.mark.parametrize("backend,precision", [("torchvision", "fp32"), ("batched", "auto")])
def test_throughput_of_a_tiny_config(cifar_dir, backend, precision):
    data = load_cifar10(cifar_dir, train=True)
    cfg = make_config("paper", width=0.125, batch_size=16, num_workers=0, augment_backend=backend,
                      precision=precision, compile=False)
    measured = training_throughput(cfg, data, steps=2, warmup=1)
    assert measured.images_per_s > 0 and measured.warmup_seconds > 0
    assert measured.precision == resolve_precision(precision, torch.device("cpu"))


def test_throughput_needs_enough_images(cifar_dir):
    data = load_cifar10(cifar_dir, train=True)
    with pytest.raises(ValueError, match="images are needed"):
        training_throughput(make_config("paper", batch_size=128), data, steps=5)
