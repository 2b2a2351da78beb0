"""The weights shipped for the members sized for microcontrollers (docs/microcontrollers.md): each loads by every
route the big model's does and gives the logits recorded here."""

import pytest
import torch
from conftest import REPO

from ghostmixnet.errors import WeightsError
from ghostmixnet.infer.calibrate import calibration_of
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.model.architectures import ARCHITECTURES
from ghostmixnet.model.factory import ENTRY_POINTS, build_model
from ghostmixnet.model.weights import read_weights, shipped_weights

# The fp32 logits of the first two seeded images, rounded to 4 decimals when the weights were shipped.
RECORDED = {
    "ghostmixnet-ic01": [[-1.6027, -1.3168, -0.1586, -2.1425, -1.1846, -2.0058, 2.5067, -2.3505, -2.319, -2.0825],
                         [-1.3688, -0.8039, -1.5282, -1.7871, -0.9972, -1.3736, 3.1189, -1.8381, -1.7925, -1.5901]],
}
MEMBERS = [name for name, arch in ARCHITECTURES.items() if arch.budget is not None]


def shipped(name):
    try:
        return shipped_weights(name)
    except WeightsError:
        pytest.skip(f"no weights shipped for {name} yet")


def seeded_images():
    return torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MEMBERS)
def test_a_members_weights_load_by_every_route_with_their_calibration(name):
    path = shipped(name)
    assert path.stat().st_size <= 7 * 10**6
    ckpt = read_weights(path)
    assert ckpt["config"]["model"] == name
    assert calibration_of(ckpt).fitted
    model = build_model(name, pretrained=True).eval()
    x = seeded_images()
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(ENTRY_POINTS[name](pretrained=True).eval()(x), expected)
        hub = torch.hub.load(str(REPO), name.replace("-", "_"), source="local", pretrained=True).eval()
        assert torch.equal(hub(x), expected)
        assert torch.equal(model_from_checkpoint(f"pretrained:{name}")[0](x), expected)
    timm = pytest.importorskip("timm")
    import ghostmixnet  # noqa: F401  (registers the models with timm)

    with torch.no_grad():
        assert torch.equal(timm.create_model(f"{name.replace('-', '_')}_cifar10", pretrained=True).eval()(x), expected)


@pytest.mark.parametrize("name", MEMBERS)
def test_a_members_weights_give_the_recorded_logits(name):
    shipped(name)
    with torch.no_grad():
        logits = build_model(name, pretrained=True).eval()(seeded_images())
    # Another CPU's kernels round differently in the last bits; a wrong file or a changed model moves them far more.
    torch.testing.assert_close(logits[:2], torch.tensor(RECORDED[name]), atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", MEMBERS)
def test_the_commands_take_a_members_weights(name, cifar_dir, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from ghostmixnet.cli import main

    shipped(name)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image)
    assert main(["predict", f"pretrained:{name}", str(image), "--device", "cpu"]) == 0
    assert "photo.png" in capsys.readouterr().out
    onnx = tmp_path / "member.onnx"
    assert main(["export", f"pretrained:{name}", "--format", "onnx", "--out", str(onnx), "--data-dir",
                 str(cifar_dir)]) == 0
    assert onnx.is_file()
