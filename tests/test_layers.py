"""The package's Ghost module and block against a reference written here from the spec alone."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghostmixnet.layers import BasicBlock, GhostBlock, GhostModule


class SpecGhostModule(nn.Module):
    """Spec: m = ceil(out / r) intrinsic maps by a k x k conv, m(r-1) ghosts by a d x d depthwise conv."""

    def __init__(self, cin, cout, stride, relu, k=3, r=2, d=3):
        super().__init__()
        m = math.ceil(cout / r)
        self.cout, self.relu = cout, relu
        self.w_primary = nn.Conv2d(cin, m, k, stride, k // 2, bias=False)
        self.bn_primary = nn.BatchNorm2d(m)
        self.w_cheap = nn.Conv2d(m, m * (r - 1), d, 1, d // 2, groups=m, bias=False)
        self.bn_cheap = nn.BatchNorm2d(m * (r - 1))

    def forward(self, x):
        a = self.bn_primary(self.w_primary(x))
        a = F.relu(a) if self.relu else a
        b = self.bn_cheap(self.w_cheap(a))
        b = F.relu(b) if self.relu else b
        return torch.cat([a, b], 1)[:, : self.cout]


class SpecGhostBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.g1 = SpecGhostModule(cin, cout, stride, relu=True)
        self.n1 = nn.BatchNorm2d(cout)
        self.g2 = SpecGhostModule(cout, cout, 1, relu=False)
        self.n2 = nn.BatchNorm2d(cout)
        squeeze = cout // 16
        self.se_reduce = nn.Conv2d(cout, squeeze, 1)
        self.se_expand = nn.Conv2d(squeeze, cout, 1)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.sc_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
            self.sc_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = F.relu(self.n1(self.g1(x)))
        y = self.n2(self.g2(y))
        scale = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(F.adaptive_avg_pool2d(y, 1)))))
        y = y * scale
        short = self.sc_bn(self.sc_conv(x)) if self.project else x
        return F.relu(y + short)


def randomize(module: nn.Module, seed: int) -> None:
    """Random weights and BatchNorm statistics, so every parameter matters to the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.3)


def transfer(src: nn.Module, dst: nn.Module) -> None:
    """Copy tensors in definition order; both follow the spec's order, so shapes must line up one to one."""
    a, b = list(src.state_dict().values()), dst.state_dict()
    assert len(a) == len(b)
    for tensor, (name, target) in zip(a, b.items()):
        assert tensor.shape == target.shape, name
        target.copy_(tensor)


@pytest.mark.parametrize("cin, cout, stride", [(32, 32, 1), (32, 64, 2), (48, 48, 2), (32, 40, 1)])
@pytest.mark.parametrize("training", [False, True])
def test_ghost_block_matches_spec(cin, cout, stride, training):
    torch.manual_seed(0)
    block, ref = GhostBlock(cin, cout, stride), SpecGhostBlock(cin, cout, stride)
    randomize(block, seed=cin + cout + stride)
    transfer(block, ref)
    block.train(training)
    ref.train(training)
    x = torch.randn(4, cin, 16, 16)
    torch.testing.assert_close(block(x), ref(x), rtol=1e-5, atol=1e-5)


def test_ghost_module_channels_and_trim():
    mod = GhostModule(8, 11, relu=False)  # m = 6 intrinsic, 6 ghost, trimmed to 11
    assert mod.primary[0].out_channels == 6
    assert mod.cheap[0].groups == 6 and mod.cheap[0].out_channels == 6
    assert mod(torch.randn(2, 8, 8, 8)).shape == (2, 11, 8, 8)


def test_ghost_module_matches_spec_module():
    mod, ref = GhostModule(16, 24, stride=2, relu=True), SpecGhostModule(16, 24, 2, relu=True)
    randomize(mod, 3)
    transfer(mod, ref)
    mod.eval()
    ref.eval()
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(mod(x), ref(x))


def test_basic_block_shortcut_and_se():
    plain, with_se = BasicBlock(16, 32, 2), BasicBlock(16, 32, 2, se_divisor=2)
    assert isinstance(plain.se, nn.Identity)
    assert with_se.se.fc1.out_channels == 16
    assert with_se(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert isinstance(BasicBlock(16, 16, 1).shortcut, nn.Identity)


def test_ghost_module_rejects_ratio_below_two():
    with pytest.raises(ValueError, match="ratio"):
        GhostModule(4, 4, ratio=1)
