"""A training step as one compiled graph: mixing, forward and loss (``loss``), and on a CUDA GPU the backward and
the AdamW update captured with them as one CUDA graph (``whole``).

The default step (``model``, :mod:`.step`) compiles the model alone: the mixing runs before it and the loss and
the optimizer after it, each as kernels of their own, and the host launches them every step. Here the mixing is
written without branches, so that one graph holds every kind of batch: the partners' images are blended by
per-pixel weights (Mixup: ``lam`` and ``1 - lam`` everywhere; CutMix: 0 or 1 inside and outside the box;
unmixed: 1 and 0 with the identity for partners) and the loss is always ``a * CE(first) + b * CE(partner)``
(unmixed: 1 and 0). The draws come from the same :class:`~ghostmixnet.data.mix.BatchMixer`, consumed in the same
order, and the blend is a fused multiply-add as the mixer's is, so run eagerly the two steps compute the same
numbers bit for bit (multiplying by 1 or 0 and adding 0 is exact; tests/train/test_step_graph.py). Compiled, the
fusion of the two differs, so they agree within rounding.

``whole`` on a CUDA GPU runs the first :data:`WARMUP_STEPS` steps uncaptured on a side stream (as CUDA graph
capture asks), captures the next step's work into a graph without running it, then replays that graph for it
and every later full batch, after copying the batch and its draws into the graph's fixed inputs. The learning
rate lives in a tensor the scheduler fills in place (the optimizer is built ``capturable``); a partial last
batch, of another shape, runs uncaptured. Elsewhere ``whole`` runs as ``loss``: nothing to capture on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch_ops import to_device
from ..data.mix import BatchMixer, MixDraw
from ..device import Compute
from .compile import compile_model, mark_step
from .step import optimizer_step

WARMUP_STEPS = 3
"""Steps run uncaptured on a side stream before ``whole`` captures (PyTorch's CUDA-graph notes ask for a few)."""


@dataclass
class MixTensors:
    """One batch's draws as tensors on the device: partners, per-pixel weights of the image and its partner
    (broadcast over the batch and channels), and the weights of the two labels' losses."""

    perm: torch.Tensor
    keep: torch.Tensor
    take: torch.Tensor
    weights: torch.Tensor


def mix_tensors(draw: MixDraw, batch: int, height: int, width: int, device: torch.device) -> MixTensors:
    """``draw`` as the branch-free blend's tensors on ``device``."""
    perm = np.arange(batch) if draw.perm is None else draw.perm
    keep = np.ones((1, 1, height, width), np.float32)
    if draw.kind == "mixup":
        keep[:] = np.float32(draw.lam)
        take = np.full_like(keep, np.float32(1.0 - draw.lam))
    else:
        if draw.box is not None:
            y0, y1, x0, x1 = draw.box
            keep[..., y0:y1, x0:x1] = 0.0
        take = 1.0 - keep
    weights = np.array([draw.lam, 1.0 - draw.lam], np.float32)
    return MixTensors(*(to_device(torch.from_numpy(np.ascontiguousarray(a)), device)
                        for a in (perm.astype(np.int64), keep, take, weights)))


def mixed_loss(model: nn.Module, compute: Compute, label_smoothing: float, images: torch.Tensor,
               targets: torch.Tensor, perm: torch.Tensor, keep: torch.Tensor, take: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:
    """The mixed batch's loss, every kind of mixing by one formula (the module docstring)."""
    mixed = torch.addcmul(images * keep, images[perm], take)  # one rounding, as the mixer's fused add
    with compute.autocast():
        logits = model(mixed)
    logits = logits.float()
    return (weights[0] * F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
            + weights[1] * F.cross_entropy(logits, targets[perm], label_smoothing=label_smoothing))


class StepRunner:
    """One training step of a run whose ``step_graph`` is ``loss`` or ``whole``: :meth:`forward_backward` then
    :meth:`update`, the pair the epoch loop calls in place of :mod:`.step`'s two functions."""

    def __init__(self, mode: str, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 compute: Compute, label_smoothing: float,
                 compile_fn: Callable[[Callable], Callable] | None = None) -> None:
        self.mode, self.model, self.optimizer = mode, model, optimizer
        self.scaler, self.compute, self.label_smoothing = scaler, compute, label_smoothing
        self.capture = mode == "whole" and compute.device.type == "cuda"
        loss_fn = self._loss_of_model
        self.loss_fn = compile_fn(loss_fn) if compile_fn is not None else loss_fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, ...] = ()
        self.static_loss: torch.Tensor | None = None
        self.steps = 0
        self.stepped = False

    def _loss_of_model(self, *tensors: torch.Tensor) -> torch.Tensor:
        return mixed_loss(self.model, self.compute, self.label_smoothing, *tensors)

    def forward_backward(self, images: torch.Tensor, targets: torch.Tensor, mixer: BatchMixer) -> torch.Tensor:
        """Mix, forward, loss and backward (with ``whole`` on a GPU, the optimizer's update too); the detached
        loss."""
        device = self.compute.device
        images = images.to(device, non_blocking=True).contiguous(memory_format=self.compute.memory_format)
        targets = targets.to(device, non_blocking=True)
        mix = mix_tensors(mixer.draw(images.shape[0], *images.shape[-2:]), images.shape[0], *images.shape[-2:],
                          device)
        tensors = (images, targets, mix.perm, mix.keep, mix.take, mix.weights)
        self.steps += 1
        self.stepped = False
        if self.capture:
            return self._captured(tensors)
        mark_step()
        loss = self.loss_fn(*tensors)
        self.scaler.scale(loss).backward()
        return loss.detach()

    def update(self, loss: torch.Tensor) -> None:
        """The optimizer's step on the accumulated gradients, unless the captured graph has just made it."""
        if not self.stepped:
            optimizer_step(self.optimizer, self.scaler, loss)

    def _captured(self, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The step through the CUDA graph: warm-up steps on a side stream, then one capture, then replays."""
        if self.graph is not None and tensors[0].shape == self.static[0].shape:
            for static, new in zip(self.static, tensors):
                static.copy_(new, non_blocking=True)
            self.graph.replay()
            self.stepped = True
            return self.static_loss.detach()
        if self.graph is not None or self.steps <= WARMUP_STEPS:
            # Uncaptured: warm-up, or a batch of another shape; the graph's gradients are its own, not added to.
            self.optimizer.zero_grad(set_to_none=True)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.loss_fn(*tensors)
                loss.backward()
                optimizer_step(self.optimizer, self.scaler, loss.detach())
            torch.cuda.current_stream().wait_stream(side)
            self.stepped = True
            return loss.detach()
        self.static = tuple(t.clone() for t in tensors)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self.loss_fn(*self.static)
            self.static_loss.backward()
            optimizer_step(self.optimizer, self.scaler, self.static_loss.detach(), clear=False)
        self.graph.replay()  # capturing recorded this step's work; replaying does it
        self.stepped = True
        return self.static_loss.detach()


def build_step_runner(mode: str, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      compute: Compute, label_smoothing: float, compile: bool, compile_mode: str,
                      distributed: bool) -> StepRunner | None:
    """The run's :class:`StepRunner`, or None for ``model`` (the loop's default step). The loss function is
    compiled when ``compile`` is set (for ``whole`` on a GPU without torch.compile's own CUDA graphs, since it
    captures one of its own)."""
    if mode == "model":
        return None
    compile_fn = None
    if compile:
        graph_mode = "default" if mode == "whole" and compute.device.type == "cuda" else compile_mode

        def compile_fn(fn: Callable) -> Callable:
            return compile_model(fn, graph_mode, compute.device, distributed)

    return StepRunner(mode, model, optimizer, scaler, compute, label_smoothing, compile_fn)
