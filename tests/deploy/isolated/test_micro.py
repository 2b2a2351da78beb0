"""int8 LiteRT files for microcontrollers, run in TFLite Micro's own interpreter (skipped, naming the extra, where
litert-torch and tflite-micro are not installed)."""

import json

import pytest
import torch

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.deploy import runtimes
from ghostmixnet.deploy.pte import sidecar
from ghostmixnet.errors import ExportError
from ghostmixnet.model.architectures import ARCHITECTURES
from ghostmixnet.model.budgets import BUDGETS
from ghostmixnet.model.checkpoint import save_atomic


def _micro():
    for runtime in ("litert-torch", "tflite-micro"):
        if not runtimes.installed(runtime):
            pytest.skip(runtimes.missing_reason(runtime))


@pytest.fixture(scope="module")
def ic01_file(tmp_path_factory):
    """The IC01 member (random weights, BatchNorm statistics as after training) as an int8 .tflite file."""
    _micro()
    from ghostmixnet.deploy.micro import export_tflite
    from ghostmixnet.model.factory import build_model

    torch.manual_seed(0)
    model = build_model("ghostmixnet-ic01").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)
    calibration = torch.randn(48, 3, 32, 32)
    cfg = make_config("fast", model="ghostmixnet-ic01")
    return model, export_tflite(model, cfg, tmp_path_factory.mktemp("micro") / "ic01.tflite", calibration), calibration


def test_the_file_runs_in_tflite_micro_and_follows_pytorch(ic01_file):
    from ghostmixnet.deploy.micro import MicroClassifier

    model, path, calibration = ic01_file
    meta = json.loads(sidecar(path).read_text())
    assert meta["int8"] is True and meta["batch"] == 1 and meta["ghostmixnet_config"]["model"] == "ghostmixnet-ic01"
    x = calibration[:24]
    with torch.no_grad():
        reference, micro = model(x), MicroClassifier(path)(x)
    assert micro.shape == reference.shape
    assert torch.corrcoef(torch.stack([reference.flatten(), micro.flatten()]))[0, 1] > 0.95
    assert (reference.argmax(1) == micro.argmax(1)).float().mean() >= 0.8


def test_the_int8_file_fits_flash_and_its_arena_is_measured(ic01_file):
    from ghostmixnet.deploy.micro import arena_bytes, strip_names

    _, path, _ = ic01_file
    data = path.read_bytes()
    assert len(data) <= BUDGETS["ic01"].int8_bytes  # about a byte per weight: the tensor names are stripped
    assert strip_names(data) == data
    arena = arena_bytes(path)
    assert 16 * 32 * 32 < arena < 1 << 20  # at least one 16-channel 32x32 int8 map, far below the search's top
    from tflite_micro.python.tflite_micro import runtime

    with pytest.raises(RuntimeError):  # and it does need that much: 1 KB less does not run
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena - 1024)
        interpreter.set_input(torch.zeros(1, 3, 32, 32, dtype=torch.int8).numpy(), 0)
        interpreter.invoke()


@pytest.mark.parametrize("name", ["ghostmixnet-ic01", "ghostmixnet-ic02"])
def test_each_member_fits_its_whole_budget_in_tflite_micro(name, tmp_path):
    # The file and the arena, measured: what no count of parameters can promise (the converter's operators,
    # TFLite Micro's memory plan). Random weights: neither figure depends on them.
    _micro()
    from ghostmixnet.deploy.micro import arena_bytes, export_tflite
    from ghostmixnet.model.factory import build_model

    torch.manual_seed(0)
    model = build_model(name).eval()
    budget = BUDGETS[ARCHITECTURES[name].budget]
    path = export_tflite(model, make_config("fast", model=name), tmp_path / "m.tflite", torch.randn(16, 3, 32, 32))
    assert path.stat().st_size <= budget.int8_bytes
    assert arena_bytes(path) <= budget.arena_bytes


def test_unusable_files_are_refused_in_one_line(tmp_path):
    _micro()
    from ghostmixnet.deploy.micro import MicroClassifier

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a usable TFLite Micro model"):
        MicroClassifier(bad)
    with pytest.raises(ExportError, match="does not exist"):
        MicroClassifier(tmp_path / "none.tflite")


def test_cli_names_the_extra_when_the_converter_is_missing(tmp_path, trained_like, monkeypatch, capsys):
    ckpt = tmp_path / "best.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict(),
                 "epoch": 1}, ckpt)
    monkeypatch.setattr(runtimes, "installed", lambda runtime: runtime != "litert-torch")
    assert main(["export", str(ckpt), "--format", "tflite", "--verify-images", "0"]) == 1
    assert "pip install 'ghostmixnet[micro]'" in capsys.readouterr().err
    assert not (tmp_path / "best-int8.tflite").exists()


def test_cli_exports_and_verifies_in_tflite_micro(tmp_path, cifar_dir, capsys):
    _micro()
    from ghostmixnet.model.factory import build_model

    ckpt = tmp_path / "best.pt"
    cfg = make_config("fast", model="ghostmixnet-ic01", val_size=50)  # the tiny data set's split
    save_atomic({"model": build_model("ghostmixnet-ic01").state_dict(), "config": cfg.to_dict(), "epoch": 1}, ckpt)
    assert main(["export", str(ckpt), "--format", "tflite", "--data-dir", str(cifar_dir), "--verify-images", "8"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "best-int8.tflite").is_file() and "LiteRT int8 for TFLite Micro" in out
    assert "-byte arena" in out and any(line.startswith("TFLite Micro vs PyTorch") for line in out.splitlines())


def test_the_accuracy_benchmark_scores_both_on_the_test_images(tmp_path, cifar_dir):
    _micro()
    from conftest import load_benchmark

    from ghostmixnet.model.factory import build_model

    ckpt = tmp_path / "best.pt"
    cfg = make_config("fast", model="ghostmixnet-ic01", val_size=50)
    save_atomic({"model": build_model("ghostmixnet-ic01").state_dict(), "config": cfg.to_dict(), "epoch": 1}, ckpt)
    result = load_benchmark("micro_accuracy").main([str(ckpt), "--data-dir", str(cifar_dir), "--images", "20"])
    assert result["images"] == 20 and 0 <= result["tflite_micro_int8_accuracy"] <= 1
    assert result["file_bytes"] == (tmp_path / "best-int8.tflite").stat().st_size and result["arena_bytes"] > 0
