"""Weights files (safetensors, fp16, hash-named) and every way of loading them: build_model, torch.hub,
timm, the command line and ``train --init``. Full-width weights of a random model stand in for the
shipped ones, in a temporary folder put in the package's place."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ghostmixnet.model.weights as pretrained
from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.errors import CheckpointError, WeightsError
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.weights import check_hash, read_weights, shipped_weights, write_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random full-width model and its weights file, as the shipped ones would be written."""
    torch.manual_seed(0)
    model = build_model("ghostmixnet").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("weights")
    path = write_weights(model.state_dict(), make_config("fast"), folder, "ghostmixnet_cifar10",
                         {"test_accuracy": 0.1})
    return model, path


@pytest.fixture
def shipped(reference, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", reference[1].parent)
    return reference


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


def test_build_model_pretrained_loads_the_shipped_weights(shipped):
    model, _ = shipped
    x = torch.randn(4, 3, 32, 32)
    loaded = build_model("ghostmixnet", pretrained=True).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=0.05, rtol=0.01)  # fp16 storage
    finetune = build_model("ghostmixnet", num_classes=100, pretrained=True)
    assert finetune.fc.out_features == 100
    assert torch.equal(finetune.stem[0].weight, loaded.stem[0].weight)
    with pytest.raises(CheckpointError, match="different model"):
        build_model("ghostmixnet", width=0.5, pretrained=True)


def test_torch_hub_local_returns_what_build_model_does(shipped):
    hub = torch.hub.load(str(REPO), "ghostmixnet", source="local", pretrained=True).eval()
    ours = build_model("ghostmixnet", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(hub(x), ours(x))


def test_timm_create_model_returns_what_build_model_does(shipped):
    timm = pytest.importorskip("timm")
    import ghostmixnet  # noqa: F401  (registers the model)

    model = timm.create_model("ghostmixnet_cifar10", pretrained=True).eval()
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 32, 32)
    ours = build_model("ghostmixnet", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ours(x))


def test_the_command_line_classifies_with_the_shipped_weights(shipped, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image)
    assert main(["predict", str(image), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "photo.png" in captured.out and shipped[1].name in captured.err
    assert main(["predict", "pretrained", str(image), "--device", "cpu"]) == 0
    assert main(["predict", "--weights", str(shipped[1]), str(image), "--device", "cpu"]) == 0


def test_train_init_starts_from_the_weights(shipped):
    from ghostmixnet.train.parts import build_training

    cfg = make_config("fast", init="pretrained", compile=False, num_classes=100)
    t = build_training(cfg, torch.device("cpu"), steps_per_epoch=2)
    weights = read_weights(shipped[1])["model"]
    assert torch.equal(t.model.stem[0].weight, weights["stem.0.weight"])
    assert t.model.fc.out_features == 100
