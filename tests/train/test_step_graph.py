"""The step compiled as one graph (step_graph loss and whole) against the default step: the same draws, images
and arithmetic, so the same weights within rounding; and the settings it cannot hold are refused."""

import pytest
import torch
from test_run import quiet

from ghostmixnet.config import make_config
from ghostmixnet.data.mix import BatchMixer
from ghostmixnet.device import Compute
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.model.depthwise import set_depthwise
from ghostmixnet.model.layers import GhostModule
from ghostmixnet.train.compile import compile_model
from ghostmixnet.train.run import train
from ghostmixnet.train.step_graph import mix_tensors, mixed_loss


def tiny(**overrides):
    values = dict(width=0.125, epochs=2, batch_size=16, val_size=20, num_workers=0, compile=False, train_subset=64,
                  mix_prob=0.7, precision="fp32")
    return make_config("paper", **{**values, **overrides})


@pytest.mark.parametrize("seed", range(12))
def test_the_branch_free_blend_and_loss_equal_the_mixer_for_every_kind_of_batch(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    images, targets = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    want = BatchMixer(0.7, seed=seed)(images, targets)
    draw = BatchMixer(0.7, seed=seed).draw(6, 8, 8)
    mix = mix_tensors(draw, 6, 8, 8, torch.device("cpu"))
    assert draw.kind == want.kind and draw.lam == want.lam
    assert torch.equal(torch.addcmul(images * mix.keep, images[mix.perm], mix.take), want.images)
    compute = Compute.resolve(torch.device("cpu"), "fp32", False)
    loss = mixed_loss(model, compute, 0.1, images, targets, mix.perm, mix.keep, mix.take, mix.weights)
    assert torch.equal(loss, want.loss(model(want.images), 0.1))


def weights(run):
    return load_checkpoint(run / "last.pt")["model"]


@pytest.mark.parametrize("mode", ["loss", "whole"])
def test_a_run_with_the_step_as_one_graph_trains_the_default_runs_weights_bit_for_bit(cifar_dir, tmp_path, mode):
    """Eager on the CPU (nothing captured there): Mixup, CutMix and unmixed batches all occur in the 8 steps."""
    train(tiny(), cifar_dir, tmp_path / "model", echo=quiet)
    train(tiny(step_graph=mode), cifar_dir, tmp_path / mode, echo=quiet)
    default, graphed = weights(tmp_path / "model"), weights(tmp_path / mode)
    assert all(torch.equal(graphed[name], tensor) for name, tensor in default.items())
    assert load_checkpoint(tmp_path / mode / "last.pt")["config"]["step_graph"] == mode


def test_shifted_depthwise_in_a_run_trains_the_default_runs_weights(cifar_dir, tmp_path):
    """With SGD, whose updates are proportional to the gradients: AdamW's divide a rounding difference in a
    near-zero gradient by that gradient's own size, a difference of up to the learning rate per step."""
    train(tiny(epochs=1, optimizer="sgd"), cifar_dir, tmp_path / "conv", echo=quiet)
    train(tiny(epochs=1, optimizer="sgd", depthwise="shifts"), cifar_dir, tmp_path / "shifts", echo=quiet)
    conv, shifts = weights(tmp_path / "conv"), weights(tmp_path / "shifts")
    worst = max(float((shifts[k].float() - t.float()).abs().max()) for k, t in conv.items())
    assert worst < 1e-4  # rounding, through 4 steps of BatchNorm over 16 images


def test_the_compiled_loss_with_shifted_depthwise_equals_the_eager_one():
    """Inductor's code for the whole loss (the blend, a Ghost module whose depthwise convolution is the fused
    shifts, cross-entropy) and its backward, on the CPU: the eager loss and gradients within rounding. A small
    network, since compiling the whole model forward and backward takes minutes on two cores."""
    torch.manual_seed(3)
    model = set_depthwise(torch.nn.Sequential(GhostModule(3, 8), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                              torch.nn.Linear(8, 5)), "shifts")
    images, targets = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    mix = mix_tensors(BatchMixer(1.0, 0.0, seed=4).draw(6, 8, 8), 6, 8, 8, torch.device("cpu"))  # CutMix
    compute = Compute.resolve(torch.device("cpu"), "fp32", False)
    losses, grads = [], []
    for fn in (mixed_loss, compile_model(mixed_loss, "default", torch.device("cpu"))):
        model.zero_grad()
        loss = fn(model, compute, 0.1, images, targets, mix.perm, mix.keep, mix.take, mix.weights)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def test_a_run_with_the_step_as_one_graph_resumes_exactly(cifar_dir, tmp_path):
    train(tiny(step_graph="whole"), cifar_dir, tmp_path / "straight", echo=quiet)
    train(tiny(step_graph="whole"), cifar_dir, tmp_path / "resumed", stop_after=1, echo=quiet)
    train(tiny(step_graph="whole"), cifar_dir, tmp_path / "resumed", resume=True, echo=quiet)
    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(t, resumed[k]) for k, t in straight.items())


@pytest.mark.parametrize("overrides,named", [
    (dict(resolutions="16:0.5"), "--resolutions"), (dict(freeze_epochs=1), "--freeze-epochs"),
    (dict(compile="auto"), "--compile auto"), (dict(optimizer="sgd", step_graph="whole"), "--optimizer sgd")])
def test_what_one_fixed_graph_cannot_hold_is_refused_in_one_line(overrides, named):
    with pytest.raises(ValueError, match=f"compiles one fixed step; drop {named}"):
        tiny(**{"step_graph": "loss", **overrides})
    with pytest.raises(ValueError, match="step_graph must be one of|step_graph"):
        tiny(step_graph="everything")
