import pytest
import torch
from torch import nn

from ghostmixnet.model.architectures import ARCHITECTURES, count_parameters
from ghostmixnet.model.factory import build_model, ghostmixnet, resnet, resnet_se


@pytest.mark.parametrize("name, params", [("ghostmixnet", 3_041_466), ("resnet", 4_630_858),
                                          ("resnet-se", 4_907_498)])
def test_parameter_counts_match_the_spec(name, params):
    assert count_parameters(build_model(name)) == params


@pytest.mark.parametrize("size", [16, 32, 48, 64, 96])
def test_every_size_pools_to_the_grid_of_32_pixels_and_takes_the_same_weights(size):
    torch.manual_seed(0)
    at32, other = build_model("ghostmixnet", width=0.125), build_model("ghostmixnet", width=0.125, image_size=size)
    other.load_state_dict(at32.state_dict())  # the same tensors: weights move between sizes
    x = torch.randn(2, 3, size, size)
    features = other.eval().forward_features(x)
    assert features.shape[-1] == size // 4 and other.pool.kernel_size == size // 8
    pooled = torch.nn.functional.adaptive_avg_pool2d(features, 2).flatten(1)
    assert torch.allclose(other.forward_head(features, pre_logits=True), pooled, atol=1e-6)


def test_the_32_pixel_model_is_unchanged_by_sizes():
    # the shipped weights' logits: the fixed 4x4 window pooling of 8x8 maps, written out here independently
    model = build_model("ghostmixnet", pretrained=True).eval()
    assert model.image_size == 32 and model.pool.kernel_size == 4
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.stages(model.stem(x))
        expected = model.fc(torch.nn.functional.avg_pool2d(features, 4).flatten(1))
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("size", [8, 20, 33, 1024])
def test_sizes_that_do_not_pool_evenly_are_refused(size):
    with pytest.raises(ValueError, match="image_size must be a multiple of 8 from 16 to 512"):
        build_model("ghostmixnet", image_size=size)


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


@pytest.mark.parametrize("name", ["ghostmixnet", "resnet", "resnet-se"])
def test_zero_init_residual_makes_every_block_its_shortcut(name):
    from ghostmixnet.model.architectures import zero_init_residuals

    torch.manual_seed(0)
    model = zero_init_residuals(build_model(name, width=0.125)).eval()
    blocks = [m for m in model.modules() if hasattr(m, "zero_init_last")]
    assert len(blocks) == sum(len(stage) for stage in model.stages)
    zeroed = {n for n, p in model.named_parameters() if n.endswith("weight") and not p.abs().sum()}
    last_bn = "bn2.weight" if name == "ghostmixnet" else "conv2.1.weight"
    assert zeroed == {f"stages.{i}.{j}.{last_bn}" for i, stage in enumerate(model.stages) for j in range(len(stage))}
    block = model.stages[0][0]  # stride 1 and as many channels as the stem: an identity shortcut
    assert isinstance(block.shortcut, nn.Identity)
    x = torch.randn(2, model.stem[0].out_channels, 32, 32)
    assert torch.allclose(block(x), torch.relu(x))  # the branch adds nothing: relu(x + 0)
    torch.manual_seed(0)
    assert torch.equal(build_model(name, width=0.125).state_dict()["fc.weight"], model.state_dict()["fc.weight"])


@pytest.mark.parametrize("name", ["ghostmixnet", "resnet"])
def test_smaller_images_keep_the_head_and_full_size_pools_as_before(name):
    # Progressive resizing trains on 16 and 24 pixels: the head averages the smaller map into the same 2x2 grid.
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, width=0.25).eval()
    for size in (16, 24):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 10)
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert torch.equal(model.forward_head(features, pre_logits=True),
                       torch.flatten(torch.nn.functional.avg_pool2d(features, 4), 1))
    small = model.forward_features(torch.randn(2, 3, 16, 16))
    assert torch.equal(model.forward_head(small, pre_logits=True),
                       torch.flatten(torch.nn.functional.avg_pool2d(small, 2), 1))


def test_se_stages_puts_se_only_where_asked():
    model = build_model("ghostmixnet-ic01")
    assert ARCHITECTURES["ghostmixnet-ic01"].se_stages == (False, True, True)
    has_se = [all(not isinstance(block.se, nn.Identity) for block in stage) for stage in model.stages]
    assert has_se == [False, True, True]
    assert all(isinstance(block.se, nn.Identity) for block in model.stages[0])


@pytest.mark.parametrize("kwargs, message", [({"channels": (16, 32)}, "channels needs one entry per stage"),
                                             ({"se_stages": (True,)}, "se_stages needs one entry per stage"),
                                             ({"block": "dense"}, "block must be")])
def test_architecture_tables_are_checked_on_creation(kwargs, message):
    from ghostmixnet.model.architectures import Architecture

    table = {"block": "ghost", "depths": (1, 1, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        Architecture(**table)
