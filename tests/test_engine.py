from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ghostmixnet.data.mix import BatchMixer
from ghostmixnet.device import Compute, native_cpu_support, resolve_device, resolve_precision
from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.infer.logits import predict_logits
from ghostmixnet.model.factory import build_model
from ghostmixnet.train.progress import Progress
from ghostmixnet.train.step import forward_backward, optimizer_step


class FixedLogits(nn.Module):
    """Returns fixed logits, one row per position in the batch."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, x):
        idx = torch.arange(x.shape[0])
        return self.table[idx]


def test_evaluate_accuracy_and_confusion():
    labels = np.array([0, 1, 2, 2])
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    result = evaluate(FixedLogits(logits), images, labels, torch.device("cpu"), batch_size=8)
    assert result.accuracy == pytest.approx(0.75)
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert result.per_class_accuracy.tolist() == [1.0, 1.0, 0.5]


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


def test_sharded_evaluation_adds_up_to_the_whole():
    torch.manual_seed(0)
    model = build_model("ghostmixnet", width=0.125).eval()
    images = np.random.default_rng(0).integers(0, 256, (21, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(21) % 10
    cpu = torch.device("cpu")
    whole = evaluate(model, images, labels, cpu)
    alone = [SimpleNamespace(rank=r, world_size=3, all_reduce_sum=lambda t: t) for r in range(3)]  # no reduction
    parts = [evaluate(model, images, labels, cpu, shard=shard) for shard in alone]
    # What an all-reduce across three processes would compute: sums of each shard's totals.
    shards = [torch.cat([torch.as_tensor(p.confusion.ravel(), dtype=torch.float64),
                         torch.tensor([p.loss * p.confusion.sum()], dtype=torch.float64)]) for p in parts]
    total = sum(shards)
    combined = evaluate(model, images, labels, cpu,
                        shard=SimpleNamespace(rank=0, world_size=3, all_reduce_sum=lambda _: total))
    assert (combined.confusion == whole.confusion).all() and combined.accuracy == whole.accuracy
    assert combined.loss == pytest.approx(whole.loss, rel=1e-5)


def test_progress_plain_lines_when_not_a_terminal():
    lines = []
    progress = Progress(5, "epoch 1/1", lines.append, every=2)
    for step in range(1, 6):
        progress.update(step, loss=1.0)
    assert lines == ["epoch 1/1 step 2/5 loss 1", "epoch 1/1 step 4/5 loss 1", "epoch 1/1 step 5/5 loss 1"]


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")


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


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if native_cpu_support("bf16") else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


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


def test_compile_mode_auto_uses_cuda_graphs_for_one_process_on_a_gpu():
    from ghostmixnet.train.compile import resolve_compile_mode

    assert resolve_compile_mode("auto", torch.device("cuda")) == "reduce-overhead"
    assert resolve_compile_mode("auto", torch.device("cuda"), distributed=True) == "default"
    assert resolve_compile_mode("auto", torch.device("cpu")) == "default"
    assert resolve_compile_mode("max-autotune", torch.device("cpu")) == "max-autotune"


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


def test_parameter_groups_keep_weight_decay_off_norms_and_biases():
    from ghostmixnet.config import make_config
    from ghostmixnet.train.optim import build_optimizer, parameter_groups

    model = build_model("ghostmixnet", width=0.125)
    decayed, free = parameter_groups(model, 0.05, decay_norm_and_bias=False)
    names = {id(p): n for n, p in model.named_parameters()}
    free_names = {names[id(p)] for p in free["params"]}
    assert free["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.05
    assert "fc.bias" in free_names and "stem.1.weight" in free_names and "stem.1.bias" in free_names
    assert {names[id(p)] for p in decayed["params"]} == {n for n, p in model.named_parameters() if p.ndim > 1}
    assert "fc.weight" in {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    # one group (the paper's AdamW, unchanged) unless asked
    assert len(parameter_groups(model, 0.05)) == 1
    paper = build_optimizer(model, make_config("paper"), torch.device("cpu"))
    assert isinstance(paper, torch.optim.AdamW) and len(paper.param_groups) == 1
    assert paper.param_groups[0]["weight_decay"] == 1e-3 and paper.param_groups[0]["betas"] == (0.9, 0.999)
    sgd = build_optimizer(model, make_config("fast", optimizer="sgd", lr=0.1, decay_norm_and_bias=False),
                          torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    assert sgd.param_groups[1]["weight_decay"] == 0


def test_weight_decay_does_not_move_an_excluded_parameter():
    from ghostmixnet.config import make_config
    from ghostmixnet.train.optim import build_optimizer

    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    optimizer = build_optimizer(model, make_config("fast", lr=0.1, weight_decay=0.5, decay_norm_and_bias=False),
                                torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay could move a parameter
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer.step()
    after = model.state_dict()
    assert not torch.equal(before["0.weight"], after["0.weight"])
    assert all(torch.equal(before[k], after[k]) for k in ("0.bias", "1.weight", "1.bias"))


def test_compiled_ghost_module_has_finite_bf16_gradients_on_the_cpu():
    # torch.compile's 512-bit CPU kernels gave this module non-finite gradients under bf16 autocast (a NaN
    # loss from the second training step); compile_model holds the generated code to 256-bit vectors.
    from ghostmixnet.model.layers import GhostModule
    from ghostmixnet.train.compile import compile_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    module = GhostModule(64, 64, relu=True)
    x = torch.randn(16, 64, 8, 8, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        out = compile_model(module, "default", torch.device("cpu"))(x)
    out.float().square().mean().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in module.parameters())
