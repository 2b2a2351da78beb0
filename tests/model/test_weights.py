"""Weights files: fp16 safetensors named by their hash, read back as written, refused when altered or
misnamed. Full-width weights of a random model (the ``reference`` fixture of conftest.py) stand in
for the shipped ones."""

import shutil

import pytest
import torch

import ghostmixnet.model.weights as pretrained
from ghostmixnet.errors import WeightsError
from ghostmixnet.model.weights import check_hash, read_weights, shipped_weights


def test_the_file_is_fp16_safetensors_named_by_its_hash(reference):
    model, path = reference
    assert path.name.startswith("ghostmixnet_cifar10-") and path.suffix == ".safetensors"
    assert pretrained.sha256_of(path).startswith(path.stem.rsplit("-", 1)[1])
    assert path.stat().st_size < 7 * 2**20
    ckpt = read_weights(path)
    assert ckpt["config"]["recipe"] == "fast" and ckpt["metadata"]["test_accuracy"] == "0.1"
    for k, v in model.state_dict().items():
        stored = ckpt["model"][k]
        assert stored.dtype == v.dtype  # floats back to fp32, integer counters untouched
        assert torch.equal(stored, v.half().float() if v.is_floating_point() else v)


def test_an_altered_or_misnamed_file_is_refused(reference, tmp_path):
    _, path = reference
    altered = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    altered.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupted or altered"):
        read_weights(altered)
    misnamed = tmp_path / "weights.safetensors"
    shutil.copy(path, misnamed)
    with pytest.raises(WeightsError, match="HASH8"):
        check_hash(misnamed)
    with pytest.raises(WeightsError, match="no shipped weights"):
        shipped_weights("ghostmixnet", tmp_path / "empty")
