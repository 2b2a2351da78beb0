import pytest
import torch
from conftest import INT8_AGREEMENT, load_benchmark, top1_agreement

from ghostmixnet.config import make_config
from ghostmixnet.deploy import runtimes
from ghostmixnet.deploy.export import export_onnx
from ghostmixnet.errors import ExportError


def test_a_missing_runtime_names_its_extra(monkeypatch):
    monkeypatch.setattr(runtimes, "installed", lambda runtime: False)
    with pytest.raises(ExportError, match=r"OpenVINO is not installed: pip install 'ghostmixnet\[openvino\]'"):
        runtimes.require("openvino")
    monkeypatch.undo()  # the real check answers False for a module that is absent
    monkeypatch.setitem(runtimes.RUNTIMES, "nothing", ("no_such_module.sub", "nothing", "Nothing"))
    assert runtimes.installed("nothing") is False


def test_openvino_runs_the_onnx_files_and_agrees_with_pytorch(tmp_path, trained_like):
    pytest.importorskip("onnxruntime")
    if not runtimes.installed("openvino"):
        pytest.skip(runtimes.missing_reason("openvino"))
    model = trained_like()
    path = export_onnx(model, make_config("paper", width=0.125), tmp_path / "m.onnx")
    # in fp32: OpenVINO's default on CPUs with native bf16 is bf16, which no fp32 tolerance holds
    # compiled for any batch size, or for batches of 4 (6 images: a full chunk and a padded one)
    for classifier in (runtimes.OpenVinoClassifier(path, threads=1, precision="f32"),
                       runtimes.OpenVinoClassifier(path, threads=1, precision="f32", batch=4)):
        for batch in (1, 6):
            x = torch.randn(batch, 3, 32, 32)
            with torch.no_grad():
                torch.testing.assert_close(classifier(x), model(x), rtol=1e-3, atol=1e-3)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(ExportError, match="not a model OpenVINO can read"):
        runtimes.OpenVinoClassifier(bad)


def test_openvino_int8_follows_the_shipped_model_on_real_images(shipped_on_real_images, shipped_int8_onnx):
    if not runtimes.installed("openvino"):
        pytest.skip(runtimes.missing_reason("openvino"))
    s = shipped_on_real_images
    agreement = top1_agreement(runtimes.OpenVinoClassifier(shipped_int8_onnx, threads=2)(s.test), s.logits)
    print(f"OpenVINO int8 vs PyTorch: top-1 agreement {100 * agreement:.2f}% on {len(s.test)} test images")
    assert agreement >= INT8_AGREEMENT


def test_the_int8_profile_covers_openvino(tiny_onnx, capsys):
    if not runtimes.installed("openvino"):
        pytest.skip(runtimes.missing_reason("openvino"))
    load_benchmark("int8_profile").main([str(tiny_onnx), "--threads", "1", "--calls", "3", "--runtimes", "openvino"])
    out = capsys.readouterr().out
    assert out.startswith("OpenVINO, 1 thread(s): ") and "| Convolution (" in out


def test_openvino_gives_the_features_of_a_graph_exported_with_them(tmp_path, trained_like):
    if not runtimes.installed("openvino"):
        pytest.skip(runtimes.missing_reason("openvino"))
    from ghostmixnet.infer.calibrate import Calibration
    from ghostmixnet.infer.logits import logits_and_features
    from ghostmixnet.infer.novelty import fit_feature_score

    model = trained_like()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        logits, features = logits_and_features(model, x)
    score = fit_feature_score("knn", features, torch.arange(6) % 3, logits, k=2)
    calibration = Calibration(1.0, 0.0, images=6, fitted_on="a test", score="knn", feature_score=score)
    path = export_onnx(model, make_config("paper", width=0.125), tmp_path / "m.onnx", calibration)
    for classifier in (runtimes.OpenVinoClassifier(path, threads=1, precision="f32"),
                       runtimes.OpenVinoClassifier(path, threads=1, precision="f32", batch=4)):
        got_logits, got_features = classifier.logits_and_features(x)
        torch.testing.assert_close(got_logits, logits, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(got_features, features, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(classifier(x), logits, rtol=1e-3, atol=1e-3)
