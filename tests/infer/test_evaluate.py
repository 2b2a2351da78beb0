from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ghostmixnet.infer.evaluate import evaluate
from ghostmixnet.model.factory import build_model


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
