import pytest
import torch

from ghostmixnet.config import make_config
from ghostmixnet.train.schedule import OneCycle, build_scheduler


def _lrs(cfg, steps_per_epoch):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler, per_step = build_scheduler(cfg, optimizer, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * (steps_per_epoch if per_step else 1)):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs, per_step


def test_one_cycle_rises_then_falls_to_zero():
    cfg = make_config("fast", epochs=4, lr=0.01, warmup=0.25)
    lrs, per_step = _lrs(cfg, steps_per_epoch=10)
    assert per_step and len(lrs) == 40
    peak = lrs.index(max(lrs))
    assert peak == 10 and lrs[peak] == pytest.approx(0.01)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # strictly rising
    assert all(a > b for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # strictly falling
    assert 0 < lrs[0] < 0.002 and 0 < lrs[-1] < 0.001  # no step is wasted at lr 0


def test_paper_schedule_restarts_per_epoch():
    cfg = make_config("paper", epochs=6, restart_epochs=3, lr=1e-3, min_lr=1e-4)
    lrs, per_step = _lrs(cfg, steps_per_epoch=10)
    assert not per_step and lrs[0] == lrs[3] == pytest.approx(1e-3) and lrs[2] < lrs[1] < lrs[0]


def test_one_cycle_rejects_impossible_warmup():
    with pytest.raises(ValueError, match="warmup_steps"):
        OneCycle(10, 10)


def test_one_cycle_stretched_mid_run_keeps_its_warm_up_and_still_ends_at_zero():
    factor = OneCycle(100, 20)
    factor.resize(150, done=50)  # after the warm-up: it stays 20 steps, the decay now ends at step 150
    assert factor.warmup_steps == 20 and factor(149) > 0 and factor(150) == 0
    assert factor(50) == pytest.approx(100 / 130)
    warming = OneCycle(100, 20)
    warming.resize(50, done=5)  # during the warm-up: it keeps its share of the run
    assert warming.warmup_steps == 10 and warming(50) == 0
    done = OneCycle(100, 20)
    done.resize(12, done=12)  # shrunk below the steps done: the run ends now
    assert done.warmup_steps == 11 and done(12) == 0
    with pytest.raises(ValueError, match="at least one step"):
        done.resize(0)
