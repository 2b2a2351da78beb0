import copy
import json

import pytest
import torch
from conftest import INT8_AGREEMENT, load_benchmark, top1_agreement

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.deploy import runtimes
from ghostmixnet.deploy.fold import fold_for_inference
from ghostmixnet.deploy.pt2e import prepared_drift
from ghostmixnet.deploy.pte import PteClassifier, capture, export_pte, prepare_xnnpack, quantize_pt2e, sidecar
from ghostmixnet.errors import ExportError
from ghostmixnet.infer.logits import normalize_uint8
from ghostmixnet.model.checkpoint import save_atomic


def _executorch():
    if not runtimes.installed("executorch"):
        pytest.skip(runtimes.missing_reason("executorch"))


def test_fp32_program_runs_in_executorch_and_equals_pytorch(tmp_path, trained_like):
    _executorch()
    model, cfg = trained_like(), make_config("paper", width=0.125)
    path = export_pte(model, cfg, tmp_path / "m.pte", batch=2)
    meta = json.loads(sidecar(path).read_text())
    assert meta["classes"] == list(cfg.class_names) and meta["batch"] == 2 and meta["int8"] is False
    classifier = PteClassifier(path, threads=1)
    x = torch.randn(5, 3, 32, 32)  # not a multiple of the program's batch: the last one is padded
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), model(x), rtol=1e-4, atol=1e-4)


def test_int8_program_follows_the_float_model(tmp_path, trained_like):
    _executorch()
    model, cfg = trained_like(), make_config("paper", width=0.125)
    calibration = torch.randn(32, 3, 32, 32)
    path = export_pte(model, cfg, tmp_path / "q.pte", calibration=calibration)
    # int8 weights are a quarter of fp32's; at this tiny width the program's fixed overhead weighs more
    assert path.stat().st_size < 0.8 * export_pte(model, cfg, tmp_path / "f.pte").stat().st_size
    x = calibration[:16]
    with torch.no_grad():
        reference, quantized = model(x), PteClassifier(path)(x)
    assert quantized.shape == reference.shape
    # int8 rounding moves the logits a little: they must still follow the float model's closely
    assert torch.corrcoef(torch.stack([reference.flatten(), quantized.flatten()]))[0, 1] > 0.95


def test_int8_preparation_keeps_what_the_folded_graph_computes(trained_like):
    """The cause of ExecuTorch int8's lost points: PT2E's preparation folds any BatchNorm that reads a
    convolution into it, even where the cheap convolution reads that convolution's output too. The folded
    graph's affine is a convolution now, which preparation leaves alone; a graph it would change is refused."""
    _executorch()
    as_batchnorms = load_benchmark("int8_layers").as_batchnorms  # the graph as it was before the fix
    folded, _ = fold_for_inference(trained_like())
    x = torch.randn(8, 3, 32, 32)
    assert prepared_drift(prepare_xnnpack(capture(folded, x[:1])), folded, x) < 1e-5
    with torch.no_grad():  # the old form computes the same function in float...
        torch.testing.assert_close(as_batchnorms(copy.deepcopy(folded))(x), folded(x), rtol=1e-5, atol=1e-5)
    old = as_batchnorms(folded)
    assert prepared_drift(prepare_xnnpack(capture(old, x[:1])), old, x) > 0.01  # ...but not once prepared
    with pytest.raises(ExportError, match="int8 preparation changed what the model computes"):
        quantize_pt2e(old, x[:1], x)


def test_int8_program_follows_the_shipped_model_on_real_images(shipped_on_real_images, tmp_path):
    """Fails without the fold's fix: the int8 program then agreed with the float model on 96.8% of these images."""
    _executorch()
    s = shipped_on_real_images
    calibration = normalize_uint8(s.calibration, torch.device("cpu"), normalization=s.cfg.normalization)
    program = export_pte(s.model, s.cfg, tmp_path / "shipped-int8.pte", batch=100, calibration=calibration)
    agreement = top1_agreement(PteClassifier(program, threads=2)(s.test), s.logits)
    print(f"ExecuTorch int8 vs PyTorch: top-1 agreement {100 * agreement:.2f}% on {len(s.test)} test images")
    assert agreement >= INT8_AGREEMENT


def test_unusable_programs_are_refused_in_one_line(tmp_path):
    _executorch()
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program")
    with pytest.raises(ExportError, match="not a usable ExecuTorch program"):
        PteClassifier(bad)
    with pytest.raises(ExportError, match="does not exist"):
        PteClassifier(tmp_path / "none.pte")


def test_cli_names_the_extra_when_executorch_is_missing(tmp_path, trained_like, monkeypatch, capsys):
    ckpt = tmp_path / "best.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict(),
                 "epoch": 1}, ckpt)
    monkeypatch.setattr(runtimes, "installed", lambda runtime: runtime != "executorch")
    assert main(["export", str(ckpt), "--format", "executorch", "--verify-images", "0"]) == 1
    assert "pip install 'ghostmixnet[executorch]'" in capsys.readouterr().err
    assert not (tmp_path / "best.pte").exists()


def test_cli_exports_and_verifies_a_program(tmp_path, trained_like, cifar_dir, capsys):
    _executorch()
    ckpt = tmp_path / "best.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict(),
                 "epoch": 1}, ckpt)
    assert main(["export", str(ckpt), "--format", "executorch", "--data-dir", str(cifar_dir),
                 "--verify-images", "16"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "best.pte").is_file() and "ExecuTorch program, XNNPACK, fp32, batch 1" in out
    line = next(s for s in out.splitlines() if s.startswith("ExecuTorch vs PyTorch"))
    assert "top-1 agreement 100.00% on 16 test images" in line
