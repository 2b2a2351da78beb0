"""Run by tests/train/test_distributed.py under torchrun: trains, then saves this rank's own weights."""

import os
import sys
from pathlib import Path

import torch

import ghostmixnet.train.parts as training
import ghostmixnet.train.run as trainer
from ghostmixnet.config import REFERENCE_COMPUTE, make_config

built = []
real_build = training.build_model


def capture(*args, **kwargs):
    built.append(real_build(*args, **kwargs))
    return built[-1]


training.build_model = capture
if "frozen-bn" in sys.argv[4:]:
    # BatchNorm normalizes over the batch a process sees, the one thing that depends on how a global
    # batch is split. Normalizing with the (fixed) running statistics instead makes a 2-process run
    # and a 1-process run compute the same function, so their weights can be compared tightly.
    def frozen(self, x):
        return torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                              False, 0.0, self.eps)

    torch.nn.modules.batchnorm._BatchNorm.forward = frozen
data_dir, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
# Per-image transforms are seeded per image, so both splits of a global batch see the same augmentation
# (the batched backend draws per process batch); fp32 so that only the order of additions differs.
cfg = make_config("basic", width=0.125, epochs=1, batch_size=32, val_size=50, dropout=0.0, train_subset=32 * steps,
                  **REFERENCE_COMPUTE | {"num_workers": 0})
trainer.train(cfg, data_dir, out / "run", device="cpu", echo=lambda _: None)
rank = int(os.environ.get("RANK", "0"))
torch.save({k: v.detach().clone() for k, v in built[0].state_dict().items()}, out / f"rank{rank}.pt")
