"""--compile auto on the CPU: eager first, then compiled only where the steps left save more than compiling costs."""

import dataclasses
import json
import re

import pytest
import torch

from ghostmixnet.device import Compute
from ghostmixnet.train import compile_auto
from ghostmixnet.train.run import train


def test_the_reckoning_weighs_the_saving_against_the_cost():
    pays, why = compile_auto.should_compile(1000, 2.0, {"compile_seconds": 100.0, "speedup": 1.25})
    assert pays and "1,000 steps left x 2.00 s a step x (1 - 1/1.25) = 400 s saved, against 100 s" in why
    assert "as measured here before" in why
    pays, why = compile_auto.should_compile(30, 2.0, None)
    assert not pays and f"against {compile_auto.PRIOR_COMPILE_SECONDS:.0f} s to compile (estimated" in why


def test_a_short_run_stays_eager_and_a_long_one_compiles_and_records_what_it_measured(cifar_dir, tmp_path,
                                                                                       tiny_config, monkeypatch):
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(batch_size=8, compile="auto")  # 19 steps an epoch, 38 in all
    lines = []
    train(dataclasses.replace(cfg, epochs=1), cifar_dir, tmp_path / "eager", echo=lines.append)
    said = [line for line in lines if line.startswith("compile auto")]
    assert len(said) == 1 and re.match(r"compile auto, 32 px: not compiling: 8 steps left x", said[0]), lines
    assert not compile_auto.cost_file().exists()
    # With a cost measured here that compiling repays, it compiles (a stand-in compiler: the choice is tested,
    # not Inductor) and records the cost and saving its first compiled steps show.
    compiled = []
    monkeypatch.setattr(compile_auto, "compile_model", lambda model, *a: compiled.append(model) or model)
    key = compile_auto.cost_key(cfg, Compute.resolve(torch.device("cpu"), cfg.precision).precision, 32)
    path = compile_auto.cost_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({key: {"compile_seconds": 0.0, "speedup": 100.0}}))
    lines.clear()
    train(cfg, cifar_dir, tmp_path / "compiled", echo=lines.append)
    said = [line for line in lines if line.startswith("compile auto")]
    assert len(compiled) == 1 and said[0].startswith("compile auto, 32 px: compiling: "), lines
    assert "as measured here before" in said[0]
    assert re.match(r"compile auto, 32 px: compiling took \d+ s; a step [\d.]+ s against [\d.]+ s eager", said[1])
    record = json.loads(path.read_text())[key]
    assert record["compile_seconds"] >= 0 and record["speedup"] > 0 and record != {"compile_seconds": 0.0,
                                                                                    "speedup": 100.0}


@pytest.mark.parametrize("value", ["yes", 1, 0.5])
def test_compile_is_true_false_or_auto(value):
    from ghostmixnet.config import make_config

    with pytest.raises(ValueError, match="compile must be true, false or 'auto'"):
        make_config("fast", compile=value)


def test_a_damaged_cost_file_costs_only_its_measurements(tmp_path):
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"good": {"compile_seconds": 12.0, "speedup": 1.5},
                                "no speed-up": {"compile_seconds": 3},
                                "negative": {"compile_seconds": 1.0, "speedup": -2}, "text": "x",
                                "nan": {"compile_seconds": "nan", "speedup": 2}}))
    assert compile_auto.read_costs(path) == {"good": {"compile_seconds": 12.0, "speedup": 1.5}}
    path.write_text("[1, 2")
    assert compile_auto.read_costs(path) == {}
