"""``ghostmixnet calibrate``: the calibration is fit on the validation split and travels with the model into
weights files, ONNX files, predict, eval and serve."""

import json

import numpy as np
import pytest
import torch

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.deploy.calibrate import calibrate_checkpoint
from ghostmixnet.deploy.pack import pack_checkpoint
from ghostmixnet.errors import CheckpointError, DataError
from ghostmixnet.infer.calibrate import Calibration, calibration_of
from ghostmixnet.infer.load import load_classifier
from ghostmixnet.model.checkpoint import load_checkpoint, save_atomic
from ghostmixnet.model.weights import read_weights, sha256_of, write_weights


@pytest.fixture
def checkpoint(tmp_path, trained_like):
    cfg = make_config("paper", width=0.125, val_size=50)
    path = tmp_path / "best.pt"
    save_atomic({"model": trained_like().state_dict(), "config": cfg.to_dict(), "epoch": 3, "val_acc": 0.2}, path)
    return path


def test_a_checkpoint_is_calibrated_in_place_keeping_what_it_held(checkpoint, cifar_dir, capsys):
    assert main(["calibrate", str(checkpoint), "--data-dir", str(cifar_dir), "--keep", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "fit on the validation split (50 training images, split seed 0)" in out and "keeps 90%" in out
    ckpt = load_checkpoint(checkpoint)
    calibration = calibration_of(ckpt)
    assert calibration.fitted and calibration.images == 50 and calibration.keep == 0.9
    assert ckpt["epoch"] == 3 and ckpt["val_acc"] == 0.2


def test_the_calibration_travels_into_weights_and_onnx_files(checkpoint, cifar_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    _, calibration = calibrate_checkpoint(checkpoint, cifar_dir, echo=lambda _: None)
    weights = pack_checkpoint(checkpoint, tmp_path / "packed")
    assert calibration_of(read_weights(weights)) == calibration
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--verify-images", "0"]) == 0
    _, _, info = load_classifier(tmp_path / "m.onnx")
    assert calibration_of(info) == calibration


def test_a_weights_file_is_written_anew_keeping_its_metadata(tmp_path, cifar_dir, trained_like):
    cfg = make_config("fast", width=0.125, val_size=50)
    source = write_weights(trained_like().state_dict(), cfg, tmp_path / "shipped", "tiny_cifar10",
                           {"test_accuracy": 0.5, "source": "run/best.pt"})
    before = sha256_of(source)
    written, calibration = calibrate_checkpoint(source, cifar_dir, tmp_path / "new", echo=lambda _: None)
    assert sha256_of(source) == before  # the original is left as it was
    assert written.parent == tmp_path / "new" and written.name.startswith("tiny_cifar10-") and written != source
    read = read_weights(written)
    assert calibration_of(read) == calibration and read["metadata"]["test_accuracy"] == "0.5"
    assert read["metadata"]["source"] == "run/best.pt"
    original = read_weights(source)["model"]
    assert all(torch.equal(original[k], v) for k, v in read["model"].items())  # the same weights, bit for bit


def test_impossible_calibrations_are_refused_before_any_work(tmp_path, cifar_dir, trained_like, capsys):
    cfg = make_config("paper", width=0.125, val_size=0)
    no_val = tmp_path / "noval.pt"
    save_atomic({"model": trained_like().state_dict(), "config": cfg.to_dict()}, no_val)
    with pytest.raises(DataError, match="without a validation split"):
        calibrate_checkpoint(no_val, cifar_dir)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    assert main(["calibrate", str(tmp_path / "m.onnx"), "--data-dir", str(cifar_dir)]) == 1
    assert "calibrate the checkpoint it was exported from" in capsys.readouterr().err
    for keep in ("1", "0", "nan"):
        assert main(["calibrate", str(no_val), "--keep", keep]) == 2
        assert "--keep" in capsys.readouterr().err
    data_file = cifar_dir / "cifar-10-batches-py" / "test_batch"
    assert main(["calibrate", str(no_val), "--data-dir", str(cifar_dir), "--out", str(data_file)]) == 1
    assert "test_batch" in capsys.readouterr().err


def test_predict_marks_answers_below_the_threshold_as_not_sure(checkpoint, cifar_dir, tmp_path, capsys):
    from PIL import Image

    ckpt = load_checkpoint(checkpoint)
    strict = Calibration(1.0, threshold=1e6, images=50, fitted_on="a test")  # nothing reaches it
    save_atomic({**ckpt, "calibration": strict.to_dict()}, checkpoint)
    Image.new("RGB", (32, 32), (90, 200, 30)).save(tmp_path / "a.png")
    assert main(["predict", str(checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "p.csv")]) == 0
    assert "not sure: maybe none of these classes" in capsys.readouterr().out
    header, row = (tmp_path / "p.csv").read_text().splitlines()
    assert header == "file,label,probability,score,sure" and row.endswith(",no")
    assert float(row.split(",")[3]) < 1e6
    assert json.loads(json.dumps(strict.to_dict())) == load_checkpoint(checkpoint)["calibration"]


def test_the_calibration_travels_into_the_int8_model(checkpoint, cifar_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from ghostmixnet.deploy.quantize import quantize_checkpoint

    _, calibration = calibrate_checkpoint(checkpoint, cifar_dir, echo=lambda _: None)
    out = quantize_checkpoint(checkpoint, tmp_path / "m-int8.onnx", cifar_dir, calibration_count=32, eval_images=0,
                              echo=lambda _: None)
    _, _, info = load_classifier(out)
    assert calibration_of(info) == calibration


def arrays_of(calibration):
    return {k: v.half() for k, v in calibration.feature_score.tensors.items()}


def test_a_feature_score_travels_with_the_model_into_every_file(checkpoint, cifar_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from ghostmixnet.deploy.quantize import quantize_checkpoint
    from ghostmixnet.infer.logits import normalize_uint8

    assert main(["calibrate", str(checkpoint), "--data-dir", str(cifar_dir), "--score", "knn"]) == 0
    out = capsys.readouterr().out
    assert "below a knn score of" in out and "MB in half precision" in out
    fitted = calibration_of(load_checkpoint(checkpoint))
    assert fitted.score == "knn" and fitted.needs_features
    assert "the knn score fit on 150 training images" in fitted.fitted_on
    stored = arrays_of(fitted)
    weights = pack_checkpoint(checkpoint, tmp_path / "packed")
    assert all(torch.equal(arrays_of(calibration_of(read_weights(weights)))[k], v) for k, v in stored.items())
    assert main(["export", str(weights), "--out", str(tmp_path / "m.onnx"), "--verify-images", "0"]) == 0
    onnx_model, _, info = load_classifier(tmp_path / "m.onnx")
    from_onnx = calibration_of(info)
    assert from_onnx == fitted and all(torch.equal(arrays_of(from_onnx)[k], v) for k, v in stored.items())
    # The ONNX graph gives the features too, and the score computed from them is PyTorch's.
    model, _, _ = load_classifier(weights)
    images = normalize_uint8(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                             torch.device("cpu"))
    with torch.no_grad():
        ref_logits = model.eval().forward_head(model.forward_features(images))
        ref_features = model.forward_head(model.forward_features(images), pre_logits=True)
    logits, features = onnx_model.logits_and_features(images)
    assert torch.allclose(features, ref_features, atol=1e-4) and torch.allclose(logits, ref_logits, atol=1e-4)
    assert torch.allclose(from_onnx.scores(logits, features), fitted.scores(ref_logits, ref_features), atol=1e-3)
    int8 = quantize_checkpoint(checkpoint, tmp_path / "m-int8.onnx", cifar_dir, calibration_count=32, eval_images=0,
                               echo=lambda _: None)
    assert calibration_of(load_classifier(int8)[2]).score == "knn"
    assert main(["eval", str(checkpoint), "--data-dir", str(cifar_dir), "--out", str(tmp_path)]) == 0
    assert "marked not sure (by its knn score)" in capsys.readouterr().out
    # Calibrated again on the energy, a weights file drops the arrays it no longer reads.
    again, energy_cal = calibrate_checkpoint(weights, cifar_dir, tmp_path / "again", echo=lambda _: None)
    read = read_weights(again)
    assert energy_cal.score == "energy" and read["novelty_arrays"] == {} and "novelty" not in read["metadata"]


def test_a_file_whose_score_is_damaged_is_refused_in_one_line(checkpoint, cifar_dir, tmp_path, capsys):
    calibrate_checkpoint(checkpoint, cifar_dir, score="mahalanobis", echo=lambda _: None)
    ckpt = load_checkpoint(checkpoint)
    ckpt["novelty"]["arrays"]["precision"] = ckpt["novelty"]["arrays"]["precision"][:3]
    save_atomic(ckpt, tmp_path / "bad.pt")
    assert main(["predict", str(tmp_path / "bad.pt"), str(tmp_path / "bad.pt")]) == 1
    err = capsys.readouterr().err
    assert "bad.pt: its out-of-distribution score is invalid (precision has shape" in err and "Traceback" not in err
    del ckpt["novelty"]
    save_atomic(ckpt, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="knn|mahalanobis score needs its fitted arrays"):
        calibration_of(load_checkpoint(tmp_path / "none.pt"), "none.pt")
