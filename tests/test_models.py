import pytest
import torch
from torch import nn

from ghostmixnet.models import ARCHITECTURES, build_model, count_parameters, ghostmixnet, resnet, resnet_se


@pytest.mark.parametrize("name, params", [("ghostmixnet", 3_041_466), ("resnet", 4_630_858),
                                          ("resnet-se", 4_907_498)])
def test_parameter_counts_match_the_spec(name, params):
    assert count_parameters(build_model(name)) == params


def test_named_builders():
    assert count_parameters(ghostmixnet()) == 3_041_466
    assert count_parameters(resnet()) == 4_630_858
    assert count_parameters(resnet_se()) == 4_907_498


def test_reference_skeleton():
    model = ghostmixnet()
    stem_conv = model.stem[0]
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (3, 64, (3, 3))
    assert stem_conv.bias is None
    assert [len(s) for s in model.stages] == [4, 4, 4]
    assert isinstance(model.pool, nn.AvgPool2d) and model.pool.kernel_size == 4
    assert model.head_drop.p == 0.2
    assert (model.fc.in_features, model.fc.out_features) == (1024, 10)
    assert [s[0].ghost1.primary[0].stride for s in model.stages] == [(1, 1), (2, 2), (2, 2)]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_forward_features_head(name):
    model = build_model(name, num_classes=7, width=0.25, dropout=0.0).eval()
    x = torch.randn(3, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (3, model.num_features, 8, 8)
    assert model.forward_head(feats, pre_logits=True).shape == (3, model.num_features * 4)
    assert torch.allclose(model(x), model.forward_head(feats), atol=1e-6)
    assert model(x).shape == (3, 7)


def test_width_shrinks_model():
    assert count_parameters(build_model("ghostmixnet", width=0.5)) < count_parameters(build_model("ghostmixnet")) / 3


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "vgg"}, "unknown model 'vgg'"),
    ({"name": "resnet", "width": 0}, "width must be positive"),
    ({"name": "resnet", "dropout": 1.0}, "dropout"),
    ({"name": "resnet", "num_classes": 0}, "num_classes"),
])
def test_bad_builder_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(**kwargs)
