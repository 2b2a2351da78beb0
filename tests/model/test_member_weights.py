"""The weights shipped for the members sized for microcontrollers (docs/microcontrollers.md): each loads by every
route the big model's does and gives the logits recorded here."""

import hashlib

import pytest
import torch
from conftest import REPO

from ghostmixnet.errors import WeightsError
from ghostmixnet.infer.calibrate import calibration_of
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.model.architectures import ARCHITECTURES
from ghostmixnet.model.factory import ENTRY_POINTS, build_model
from ghostmixnet.model.weights import read_weights, shipped_weights

# sha256 (first 16 hex digits) of the fp32 logits of 8 seeded images at one thread, and the first logits rounded.
RECORDED = {
    "ghostmixnet-ic01": None,
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
    torch.set_num_threads(1)  # the record's kernels: one thread
    with torch.no_grad():
        logits = build_model(name, pretrained=True).eval()(seeded_images())
    digest, first = RECORDED[name]
    torch.testing.assert_close(logits[0], torch.tensor(first), atol=2e-3, rtol=0)
    if hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16] != digest:
        # Bit-exact only with the record's CPU kernels; another CPU's may round differently (the values held above).
        pytest.xfail("logits match to 2e-3 but not bit for bit: another CPU's kernels")
