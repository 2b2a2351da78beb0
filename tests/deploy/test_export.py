import numpy as np
import pytest
import torch

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.deploy.export import compare, export_onnx
from ghostmixnet.errors import ExportError
from ghostmixnet.infer.onnx import OnnxClassifier
from ghostmixnet.model.checkpoint import save_atomic

pytest.importorskip("onnxruntime")


def test_onnx_round_trip_with_dynamic_batch(tmp_path, trained_like):
    model = trained_like()
    cfg = make_config("paper", width=0.125)
    path = export_onnx(model, cfg, tmp_path / "m.onnx")
    clf = OnnxClassifier(path)
    assert clf.config() == cfg
    for batch in (1, 5):
        result = compare(model, clf, torch.randn(batch, 3, 32, 32))
        assert result["max_abs_diff"] < 1e-4 and result["top1_agreement"] == 1.0


def test_export_predict_and_eval_through_the_cli(tmp_path, cifar_dir, capsys, trained_like):
    model = trained_like()
    cfg = make_config("paper", width=0.125, val_size=50)
    save_atomic({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, tmp_path / "best.pt")
    assert main(["export", str(tmp_path / "best.pt"), "--data-dir", str(cifar_dir), "--out",
                 str(tmp_path / "m.onnx"), "--verify-images", "64"]) == 0
    out = capsys.readouterr().out
    assert "ONNX Runtime vs PyTorch" in out and "top-1 agreement 100.00% on 64 test images" in out
    assert main(["eval", str(tmp_path / "m.onnx"), "--data-dir", str(cifar_dir), "--out", str(tmp_path)]) == 0
    onnx_eval = capsys.readouterr().out
    assert main(["eval", str(tmp_path / "best.pt"), "--data-dir", str(cifar_dir), "--out", str(tmp_path)]) == 0
    torch_eval = capsys.readouterr().out
    line = [s for s in onnx_eval.splitlines() if s.startswith("accuracy")]
    assert line == [s for s in torch_eval.splitlines() if s.startswith("accuracy")][:1]
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    import pickle

    (tmp_path / "t.pkl").write_bytes(pickle.dumps({b"data": images}))
    assert main(["predict", str(tmp_path / "m.onnx"), str(tmp_path / "t.pkl"), "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv").read_text().startswith("ID,Labels\n0,")


def test_unusable_onnx_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="not a usable ONNX model"):
        OnnxClassifier(tmp_path / "bad.onnx")
    with pytest.raises(ExportError, match="does not exist"):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_export_needs_no_dataset_and_says_what_it_verified_on(tmp_path, capsys, trained_like):
    cfg = make_config("paper", width=0.125, val_size=50)
    save_atomic({"model": trained_like().state_dict(), "config": cfg.to_dict(), "epoch": 1}, tmp_path / "best.pt")
    assert main(["export", str(tmp_path / "best.pt"), "--data-dir", str(tmp_path / "nothing-here"), "--out",
                 str(tmp_path / "m.onnx"), "--verify-images", "16"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "m.onnx").is_file()
    assert "top-1 agreement 100.00% on 16 generated images (random pixels: no CIFAR-10 in" in out
