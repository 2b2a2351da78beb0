import pytest
import torch
from torch import nn

from ghostmixnet.data.mix import BatchMixer
from ghostmixnet.device import Compute
from ghostmixnet.model.factory import build_model
from ghostmixnet.train.step import forward_backward, optimizer_step


def batches(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_train_step_updates_weights(precision):
    torch.manual_seed(0)
    model = build_model("ghostmixnet", width=0.125).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # fp16 runs with an active gradient scaler, as on GPUs without bf16: the CPU stands in for them.
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16", init_scale=2.0**8)
    for images, targets in batches():
        compute = Compute.resolve(torch.device("cpu"), precision)
        loss = forward_backward(model, images, targets, BatchMixer(seed=0), scaler, compute, 0.1)
        assert torch.isfinite(loss) and loss.requires_grad is False
        optimizer_step(opt, scaler)
        assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("loss_value", [float("nan"), float("inf")])
def test_fused_step_with_a_non_finite_loss_changes_nothing(loss_value):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1, fused=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model(torch.randn(2, 4)).sum().backward()
    optimizer_step(optimizer, scaler, torch.tensor(1.0))  # a finite step first: moments and a step count
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = [s["step"].clone() for s in optimizer.state.values()]
    model(torch.randn(2, 4)).sum().backward()
    optimizer_step(optimizer, scaler, torch.tensor(loss_value))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [s["step"] for s in optimizer.state.values()] == steps
    assert not hasattr(optimizer, "found_inf") and all(p.grad is None for p in model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer_step(optimizer, scaler, torch.tensor(2.0))  # and the next finite step goes through
    assert not torch.equal(before["weight"], model.weight)
