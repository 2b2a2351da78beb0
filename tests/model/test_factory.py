"""Every way of loading the shipped weights: build_model, torch.hub, timm, the command line and
``train --init``. Full-width weights of a random model (the ``reference`` fixture of conftest.py)
stand in for the shipped ones, in a temporary folder put in the package's place."""

import numpy as np
import pytest
import torch
from conftest import REPO

import ghostmixnet.model.weights as pretrained
from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.errors import CheckpointError
from ghostmixnet.model.architectures import count_parameters
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.weights import read_weights


@pytest.fixture
def shipped(reference, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", reference[1].parent)
    return reference


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


def test_timm_registers_the_members_too():
    timm = pytest.importorskip("timm")
    import ghostmixnet  # noqa: F401  (registers the models)

    for name in ("ghostmixnet-ic01", "ghostmixnet-ic02"):
        model = timm.create_model(f"{name.replace('-', '_')}_cifar10", num_classes=7)
        assert count_parameters(model) == count_parameters(build_model(name, num_classes=7))
        assert model.pretrained_cfg["input_size"] == (3, 32, 32)


def test_pretrained_colon_names_a_members_shipped_weights(tmp_path, monkeypatch):
    from ghostmixnet.errors import WeightsError
    from ghostmixnet.model.checkpoint import resolve_checkpoint

    with pytest.raises(WeightsError, match="no shipped weights for 'resnet'"):
        resolve_checkpoint("pretrained:resnet")
    monkeypatch.chdir(tmp_path)  # a file of that name is a file, as with the word pretrained
    (tmp_path / "pretrained:resnet").write_text("x")
    assert resolve_checkpoint("pretrained:resnet").resolve() == tmp_path / "pretrained:resnet"


def test_every_entry_point_builds_for_another_image_size_with_the_same_weights():
    from ghostmixnet.model.factory import ENTRY_POINTS, ghostmixnet

    for name, entry in ENTRY_POINTS.items():
        model = entry(width=0.125, image_size=64)
        assert model.image_size == 64 and model(torch.zeros(1, 3, 64, 64)).shape == (1, 10), name
    at64, at32 = ghostmixnet(pretrained=True, image_size=64), ghostmixnet(pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(at64.state_dict().values(), at32.state_dict().values()))


def test_the_robust_weights_load_by_every_route():
    from ghostmixnet.model.checkpoint import resolve_checkpoint
    from ghostmixnet.model.factory import ghostmixnet, ghostmixnet_robust
    from ghostmixnet.model.weights import shipped_weights

    robust, shipped = ghostmixnet_robust(pretrained=True).eval(), ghostmixnet(pretrained=True).eval()
    path = shipped_weights("ghostmixnet-robust")
    assert path.name.startswith("ghostmixnet_robust_cifar10-")
    assert resolve_checkpoint("pretrained:ghostmixnet-robust") == path
    x = torch.randn(2, 3, 32, 32)
    hub = torch.hub.load(str(REPO), "ghostmixnet_robust", source="local", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(hub(x), robust(x)) and not torch.equal(robust(x), shipped(x))
        timm = pytest.importorskip("timm")
        import ghostmixnet as _  # noqa: F401  (registers the models)

        assert torch.equal(timm.create_model("ghostmixnet_robust_cifar10", pretrained=True).eval()(x), robust(x))
    assert ghostmixnet_robust(num_classes=5).fc.out_features == 5
