import numpy as np
import torch

from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.infer.logits import predict_logits
from ghostmixnet.model.factory import build_model


def test_mirror_tta_averages_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = build_model("ghostmixnet", width=0.125).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    plain = predict_logits(model, images, cpu)
    mirrored = predict_logits(model, np.ascontiguousarray(images[:, :, ::-1]), cpu)
    both = predict_logits(model, images, cpu, tta=True)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(both, plain, atol=1e-3)  # the mirror changes something
    labels = plain.argmax(1).numpy()
    assert evaluate(model, images, labels, cpu).accuracy == 1.0
    assert evaluate(model, images, labels, cpu, tta=True).accuracy == float((both.argmax(1).numpy() == labels).mean())


def test_shifted_tta_averages_six_views():
    from ghostmixnet.infer.logits import tta_views

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    views = tta_views(x, 2)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[3], x.flip(3))
    assert torch.equal(views[1][..., 2:, 2:], x[..., :-2, :-2])  # moved down-right by 2
    assert torch.equal(views[2][..., :-2, :-2], x[..., 2:, 2:])  # moved up-left by 2
    assert len(tta_views(x, 0)) == 2
    torch.manual_seed(0)
    model = build_model("ghostmixnet", width=0.125).eval()
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    shifted = predict_logits(model, images, cpu, tta=True, tta_shift=1)
    assert not torch.allclose(shifted, predict_logits(model, images, cpu, tta=True), atol=1e-4)
    assert torch.equal(predict_logits(model, images, cpu, tta=False, tta_shift=1), predict_logits(model, images, cpu))
