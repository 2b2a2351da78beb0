"""With a feature-space "not sure" score, predict and serve mark an obvious outlier and keep an image of a class.

The shipped weights with a k-nearest-neighbour score fit on 600 real training images, its threshold on 300
validation images (skips without the real CIFAR-10): uniform noise, which the energy score lets through at 0.98
"bird", is marked; real test images are not (most of them: the threshold keeps 95% of validation images).
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ghostmixnet.cli import main
from ghostmixnet.data.splits import load_splits, stratified_subset
from ghostmixnet.infer.calibrate import fit_calibration, novelty_entry
from ghostmixnet.infer.logits import predict_features
from ghostmixnet.infer.novelty import fit_feature_score
from ghostmixnet.model.checkpoint import save_atomic
from ghostmixnet.model.weights import read_weights, shipped_weights


@pytest.fixture(scope="module")
def knn_checkpoint(real_data_dir, tmp_path_factory):
    from ghostmixnet.infer.load import model_from_checkpoint

    model, cfg, _ = model_from_checkpoint("pretrained")
    splits = load_splits(real_data_dir, cfg.val_size, cfg.split_seed)
    fit, val = stratified_subset(splits.train, 600, seed=1), stratified_subset(splits.val, 300, seed=1)
    cpu = torch.device("cpu")
    logits, features = predict_features(model, fit.images, cpu)
    score = fit_feature_score("knn", features, fit.labels, logits, k=5)
    val_logits, val_features = predict_features(model, val.images, cpu)
    calibration = fit_calibration(val_logits, val.labels, 0.95, "300 validation images", val_features, score, "knn")
    shipped = read_weights(shipped_weights())
    path = tmp_path_factory.mktemp("knn") / "best.pt"
    save_atomic({"model": shipped["model"], "config": {**shipped["config"], "tta": False}, "epoch": "shipped",
                 "calibration": calibration.to_dict(), "novelty": novelty_entry(calibration)}, path)
    return path, splits.test.images[:8]


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_predict_marks_noise_and_keeps_a_photo_of_a_class(knn_checkpoint, tmp_path, capsys):
    path, test_images = knn_checkpoint
    (tmp_path / "noise.png").write_bytes(png(noise()))
    for i, image in enumerate(test_images):
        (tmp_path / f"test{i}.png").write_bytes(png(image))
    assert main(["predict", str(path), str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 0
    rows = {line.split(",")[0].rsplit("/", 1)[-1]: line.split(",")[-1]
            for line in (tmp_path / "p.csv").read_text().splitlines()[1:]}
    assert rows["noise.png"] == "no"
    assert sum(rows[f"test{i}.png"] == "yes" for i in range(len(test_images))) >= len(test_images) - 1


def test_serve_marks_noise_and_keeps_a_photo_of_a_class(knn_checkpoint):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from ghostmixnet.serve.app import create_app
    from ghostmixnet.serve.served import load_served_model
    from ghostmixnet.serve.uploads import Limits

    path, test_images = knn_checkpoint
    served = load_served_model(path, torch.device("cpu"))
    assert served.info["runtime"] == "torch" and served.calibration.score == "knn"
    with TestClient(create_app(served, Limits())) as client:
        files = [("files", ("noise.png", png(noise()), "image/png"))]
        files += [("files", (f"t{i}.png", png(image), "image/png")) for i, image in enumerate(test_images)]
        results = client.post("/predict", files=files).json()["results"]
        assert client.get("/model").json()["calibration"]["score"] == "knn"
    assert results[0]["sure"] is False and "note" in results[0]
    assert sum(r["sure"] for r in results[1:]) >= len(test_images) - 1


@pytest.mark.parametrize("runtime", ["onnxruntime", "onnxruntime-int8"])
def test_every_onnx_runtime_serves_a_feature_score(runtime, tiny_checkpoint, cifar_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from ghostmixnet.deploy.calibrate import calibrate_checkpoint
    from ghostmixnet.serve.served import load_served_model

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    calibrate_checkpoint(checkpoint, cifar_dir, score="knn", echo=lambda _: None)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    reference = load_served_model(checkpoint, torch.device("cpu"), runtime="torch", views=1)
    served = load_served_model(checkpoint, torch.device("cpu"), runtime=runtime, views=1, data_dir=cifar_dir,
                               check_images=20, cache=tmp_path / "cache")
    expected = reference.calibration.scores(*reference.split(reference.logits(images)))
    scores = served.calibration.scores(*served.split(served.logits(images)))
    assert served.info["runtime"] == runtime and served.split(served.logits(images))[1].shape[1] > 0
    assert torch.allclose(scores, expected, atol=1e-3 if runtime == "onnxruntime" else 0.1)
