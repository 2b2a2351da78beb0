"""The cheap depthwise convolution as shifted slices: the framework's convolution's function, forward and backward."""

import pytest
import torch
from torch import nn

from ghostmixnet.model.depthwise import depthwise_shifts, set_depthwise, shiftable
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.layers import GhostModule


@pytest.mark.parametrize("multiplier,kernel", [(1, 3), (2, 3), (1, 5)])
def test_shifts_equal_the_convolution_forward_and_backward(multiplier, kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6 * multiplier, kernel, 1, kernel // 2, groups=6, bias=False)
    x = torch.randn(4, 6, 9, 7, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    want, got = conv(x), depthwise_shifts(x2, conv)
    assert shiftable(conv) and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(want)
    (gx, gw), (hx, hw) = (torch.autograd.grad(out, (inp, conv.weight), grad) for out, inp in ((want, x), (got, x2)))
    torch.testing.assert_close(hx, gx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hw, gw, rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_it_takes_what_the_convolution_takes_and_sums_in_fp32():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False)
    x = torch.randn(2, 8, 8, 8)
    with torch.autocast("cpu", torch.bfloat16):
        got = depthwise_shifts(x, conv)
    want = conv._conv_forward(x.bfloat16().float(), conv.weight.bfloat16().float(), None)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=8e-3, atol=1e-2)  # one bf16 rounding of the sum


def test_only_plain_depthwise_convolutions_are_computed_by_shifts():
    assert not shiftable(nn.Conv2d(4, 4, 3, 2, 1, groups=4, bias=False))  # strided
    assert not shiftable(nn.Conv2d(4, 8, 3, 1, 1, bias=False))  # full
    assert not shiftable(nn.Conv2d(4, 4, 3, 1, 1, groups=4))  # with bias
    assert not shiftable(nn.Conv2d(4, 4, 3, 1, 0, groups=4, bias=False))  # unpadded


def test_a_model_with_shifts_computes_the_same_function_and_gradients():
    torch.manual_seed(2)
    model = build_model("ghostmixnet", 10, 0.125, 0.0)
    x = torch.randn(4, 3, 32, 32)
    outs, grads = [], []
    for mode in ("conv", "shifts", "conv"):
        set_depthwise(model, mode)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert sum(isinstance(m, GhostModule) and m.depthwise == "conv" for m in model.modules()) > 0
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)
    assert torch.equal(outs[2], outs[0])  # back to the convolution: bit for bit as before
    with pytest.raises(ValueError, match="depthwise must be one of"):
        set_depthwise(model, "winograd")
