import numpy as np
import pytest
import torch

from ghostmixnet.config import make_config
from ghostmixnet.deploy.export import export_onnx
from ghostmixnet.deploy.fold import FoldedGhostBlock, fold_conv_batchnorm, fold_for_inference
from ghostmixnet.model.factory import build_model


def _nonpositive_bn1_shifts(model: torch.nn.Module) -> torch.nn.Module:
    """Give every Ghost block's bn1 positive scales and shifts <= 0, as trained weights have: the foldable case."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("bn1"):
                module.weight.uniform_(0.5, 1.5)
                module.running_mean.uniform_(0.0, 0.5)
                module.bias.copy_(module.running_mean * module.weight / torch.sqrt(module.running_var + module.eps)
                                  - torch.rand_like(module.bias) * 0.3)
    return model


def _bn_count(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["ghostmixnet", "resnet-se"])
def test_convolution_batchnorms_fold_and_the_rest_stay(name, trained_like):
    model = trained_like(name)
    folded = fold_conv_batchnorm(model)
    assert _bn_count(folded) == (24 if name == "ghostmixnet" else 0)  # bn1, bn2 of each of the 12 Ghost blocks
    x = torch.randn(8, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert model.stem[1].__class__ is torch.nn.BatchNorm2d  # the original is untouched


def test_inference_graph_folds_bn1_and_half_of_bn2_exactly(trained_like):
    model = _nonpositive_bn1_shifts(trained_like())
    before = _bn_count(model)
    folded, report = fold_for_inference(model)
    assert (report.blocks, report.bn1_folded, report.bn1_kept) == (12, 12, 0)
    # no BatchNorm left: where bn2 meets the primary output, its half is a depthwise 1x1 convolution per block
    assert _bn_count(folded) == 0
    affines = [b.affine2 for b in folded.modules() if isinstance(b, FoldedGhostBlock)]
    assert len(affines) == 12 and all(a.kernel_size == (1, 1) and a.groups == a.in_channels == a.out_channels
                                      for a in affines)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert _bn_count(model) == before  # the original is untouched


def test_a_bn1_with_a_positive_shift_is_kept_whole(trained_like):
    model = _nonpositive_bn1_shifts(trained_like())
    with torch.no_grad():  # one channel of one block: ReLU(s * ReLU(z) + t) with t > 0 is not s * ReLU(z + c)
        bn = model.stages[1][2].bn1
        bn.bias[3] = bn.running_mean[3] * bn.weight[3] / torch.sqrt(bn.running_var[3] + bn.eps) + 0.5
    folded, report = fold_for_inference(model)
    assert (report.bn1_folded, report.bn1_kept) == (11, 1)
    assert folded.stages[1][2].bn1 is not None and folded.stages[1][1].bn1 is None
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_shipped_weights_fold_exactly_on_real_images(real_data_dir):
    from ghostmixnet.data.cifar import load_cifar10
    from ghostmixnet.infer.logits import normalize_uint8

    model = build_model("ghostmixnet", pretrained=True).eval()
    folded, report = fold_for_inference(model)
    assert report.bn1_folded == 12  # every trained bn1 has positive scales and shifts <= 0
    images = normalize_uint8(load_cifar10(real_data_dir, train=False).images[:64], torch.device("cpu"))
    with torch.no_grad():
        reference, candidate = model(images), folded(images)
    assert (reference - candidate).abs().max() < 1e-4
    assert torch.equal(reference.argmax(1), candidate.argmax(1))


def test_the_onnx_graph_has_no_batchnorms(tmp_path, trained_like):
    pytest.importorskip("onnxruntime")
    import onnx

    from ghostmixnet.infer.onnx import OnnxClassifier

    model = _nonpositive_bn1_shifts(trained_like())
    path = export_onnx(model, make_config("paper", width=0.125), tmp_path / "m.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("BatchNormalization") == 0
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(OnnxClassifier(path)(x).numpy(), model(x).numpy(), atol=1e-4)
