"""The package's Ghost module and block against a reference written here from the spec alone."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghostmixnet.model.factory import build_model
from ghostmixnet.model.fused_bn import set_fused_bn
from ghostmixnet.model.layers import BasicBlock, GhostBlock, GhostModule


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


def _randomize_batch_norms(module: nn.Module) -> None:
    """BatchNorm weights of both signs and non-zero biases, so no term of the fused algebra hides."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, -1.5, 1.5)
            nn.init.normal_(m.bias)


@pytest.mark.parametrize("stride", [1, 2])
def test_fused_double_batch_norm_is_the_same_function(stride):
    # In float64, so that any difference left is an error in the algebra, not rounding.
    torch.manual_seed(0)
    plain = GhostBlock(16, 32, stride).double()
    _randomize_batch_norms(plain)
    fused = copy.deepcopy(plain)
    fused.fused_bn = True
    x = torch.randn(6, 16, 12, 12, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(3):  # running statistics move over several steps
        ya, yb = plain(xa), fused(xb)
    grad = torch.randn_like(ya)
    (ya * grad).sum().backward()
    (yb * grad).sum().backward()
    assert torch.allclose(ya, yb, rtol=0, atol=1e-12)
    assert torch.allclose(xa.grad, xb.grad, rtol=0, atol=1e-12)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        assert q.grad is not None, name  # DDP needs every parameter to take part
        assert torch.allclose(p.grad, q.grad, rtol=0, atol=1e-10), name
    for (name, a), b in zip(plain.named_buffers(), fused.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-12), name
    plain.eval(), fused.eval()
    assert torch.allclose(plain(x), fused(x), rtol=0, atol=1e-12)  # evaluation takes the plain path


def test_fused_model_under_bf16_autocast_matches_plain():
    torch.manual_seed(0)
    plain = build_model("ghostmixnet", width=0.25)
    for m in plain.modules():  # trained-looking BatchNorms: positive scales, small shifts
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0, 0.2)
    fused = set_fused_bn(copy.deepcopy(plain))
    reference = copy.deepcopy(plain)
    assert sum(isinstance(m, GhostBlock) and m.fused_bn for m in fused.modules()) == 12
    assert fused.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(8, 3, 32, 32)
    exact = reference(x)  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = plain(x).float(), fused(x).float()
    # bf16 moves both away from fp32; the fused path must not move further than the plain one does.
    assert (b - exact).abs().max() <= 1.5 * (a - exact).abs().max()
