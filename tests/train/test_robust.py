"""The robust recipe's degradations in a run: they change what is learned, and the run resumes exactly."""

import torch
from test_run import quiet

from ghostmixnet.config import make_config
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.run import train


def tiny(**overrides):
    values = dict(width=0.125, epochs=2, batch_size=16, val_size=20, num_workers=0, compile=False, augment="basic",
                  mix_prob=0.0, degrade=1.0, train_subset=64)
    return make_config("paper", **{**values, **overrides})


def test_a_run_with_degradations_resumes_exactly_and_differs_from_one_without(cifar_dir, tmp_path):
    train(tiny(), cifar_dir, tmp_path / "straight", echo=quiet)
    train(tiny(), cifar_dir, tmp_path / "resumed", stop_after=1, echo=quiet)
    train(tiny(), cifar_dir, tmp_path / "resumed", resume=True, echo=quiet)
    train(tiny(degrade=0.0), cifar_dir, tmp_path / "clean", echo=quiet)
    straight, resumed, clean = (load_checkpoint(tmp_path / run / "last.pt")["model"]
                                for run in ("straight", "resumed", "clean"))
    assert all(torch.equal(t, resumed[k]) for k, t in straight.items())
    assert not all(torch.equal(t, clean[k]) for k, t in straight.items())
    assert load_checkpoint(tmp_path / "straight" / "last.pt")["config"]["degrade"] == 1.0
