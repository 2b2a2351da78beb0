"""Images of another size than 32, end to end: a run at 48 pixels trains, resumes exactly, evaluates, predicts,
exports a graph of its own size and serves; a 48-pixel model given 32-pixel images resizes them; the frozen
phase of fine-tuning holds the pretrained layers exactly."""

import base64
import csv
import io
import json

import numpy as np
import pytest
import torch
from conftest import write_class_folder
from PIL import Image
from test_run import quiet

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.data.images import read_image, resize_images
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.infer.logits import predict_logits
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.run import train

SIZE = 48


def tiny(**overrides):
    values = dict(width=0.125, epochs=2, batch_size=12, num_workers=0, compile=False, holdout=0.2, lr=3e-3,
                  augment="basic", mix_prob=0.0, dataset="folder", image_size=SIZE)
    return make_config("paper", **{**values, **overrides})


@pytest.fixture(scope="module")
def run48(class_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("size") / "run"
    train(tiny(), class_folder, run, echo=quiet)
    return run


def test_a_run_at_48_pixels_resumes_exactly_and_keeps_its_size_with_the_model(run48, class_folder, tmp_path):
    # both runs here, under this test's thread count (the module's fixture may have trained under another)
    train(tiny(), class_folder, tmp_path / "straight", echo=quiet)
    train(tiny(), class_folder, tmp_path / "resumed", stop_after=1, echo=quiet)
    train(tiny(), class_folder, tmp_path / "resumed", resume=True, echo=quiet)
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "resumed"))
    assert all(torch.equal(t, b["model"][k]) for k, t in a["model"].items())
    assert json.loads((run48 / "config.json").read_text())["image_size"] == SIZE
    assert json.loads((run48 / "run.json").read_text())["data"]["image_size"] == SIZE
    model, cfg, _ = model_from_checkpoint(run48 / "best.pt")
    assert cfg.image_size == model.image_size == SIZE and model.pool.kernel_size == SIZE // 4 // 2
    assert model(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, 3)


def test_eval_and_predict_read_the_size_from_the_model(run48, class_folder, tmp_path, capsys):
    assert main(["eval", str(run48), "--data-dir", str(class_folder), "--device", "cpu"]) == 0
    assert json.loads((run48 / "eval-best-test.json").read_text())["images"] > 0
    out = tmp_path / "answers.csv"
    assert main(["predict", str(run48), str(class_folder / "dog"), "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(csv.DictReader(out.open()))) == 20


def test_a_48_pixel_model_given_32_pixel_images_resizes_them_as_it_reads_a_32_pixel_photo(run48, tmp_path):
    model, cfg, _ = model_from_checkpoint(run48 / "best.pt")
    small = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    files = []
    for i, image in enumerate(small):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        files.append(read_image(tmp_path / f"{i}.png", f"{i}.png", size=SIZE)[0])
    read = np.stack(files)
    assert read.shape[1:] == (SIZE, SIZE, 3) and np.array_equal(read, resize_images(small, SIZE))
    given_small = predict_logits(model, small, torch.device("cpu"), normalization=cfg.normalization)
    given_read = predict_logits(model, read, torch.device("cpu"), normalization=cfg.normalization)
    assert torch.equal(given_small, given_read)


def test_the_exported_graph_takes_the_models_size_and_predicts(run48, class_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from ghostmixnet.deploy.export import export_checkpoint
    from ghostmixnet.deploy.quantize import quantize_checkpoint
    from ghostmixnet.infer.onnx import OnnxClassifier

    fp = export_checkpoint(run48, tmp_path / "m.onnx", class_folder, verify_images=8, echo=quiet)
    q = quantize_checkpoint(run48, tmp_path / "m-int8.onnx", class_folder, calibration_count=12, eval_images=12,
                            echo=quiet)
    for path in (fp, q):
        onnx = OnnxClassifier(path)
        assert onnx.session.get_inputs()[0].shape[1:] == [3, SIZE, SIZE] and onnx.image_size == SIZE
    model, cfg, _ = model_from_checkpoint(run48 / "best.pt")
    images = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)  # resized for the graph
    ours = predict_logits(model, images, torch.device("cpu"), normalization=cfg.normalization)
    theirs = predict_logits(OnnxClassifier(fp), images, torch.device("cpu"), normalization=cfg.normalization)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_serve_reads_a_32_pixel_upload_at_the_models_size(run48):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from ghostmixnet.serve.app import create_app
    from ghostmixnet.serve.served import load_served_model

    served = load_served_model(run48, torch.device("cpu"))
    assert served.image_size == SIZE
    client = TestClient(create_app(served))
    assert client.get("/model").json()["image_size"] == SIZE
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buffer, format="PNG")
    answer = client.post("/predict", files=[("files", ("small.png", buffer.getvalue(), "image/png"))]).json()
    result = answer["results"][0]
    assert result["size"] == [32, 32] and len(result["top"]) == 3
    seen = Image.open(io.BytesIO(base64.b64decode(result["input_32x32"].split(",", 1)[1])))
    assert seen.size == (SIZE, SIZE)  # what the model saw: the upload at its size


def test_a_frozen_phase_holds_every_pretrained_layer_and_its_statistics_then_lets_them_learn(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=10)
    cfg = tiny(init="pretrained", width=1.0, epochs=2, freeze_epochs=1, image_size=32)
    train(cfg, data, tmp_path / "run", stop_after=1, echo=quiet)
    after_one = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    start = load_checkpoint("pretrained")["model"]
    backbone = [k for k in after_one if not k.startswith("fc.")]
    assert all(torch.equal(after_one[k].float(), start[k].float()) for k in backbone)  # weights and BN statistics
    train(cfg, data, tmp_path / "run", resume=True, echo=quiet)
    after_two = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert not torch.equal(after_two["stem.0.weight"], after_one["stem.0.weight"])
    assert not torch.equal(after_one["fc.weight"], after_two["fc.weight"])


def test_a_48_pixel_model_of_cifar10s_classes_evaluates_on_cifar10s_32_pixel_images(cifar_dir, tmp_path):
    from ghostmixnet.data.cifar import CLASSES
    from ghostmixnet.model.checkpoint import save_atomic
    from ghostmixnet.model.factory import build_model

    cfg = tiny(classes=CLASSES, num_classes=10, val_size=50)
    save_atomic({"model": build_model("ghostmixnet", width=0.125, image_size=SIZE).state_dict(),
                 "config": cfg.to_dict(), "epoch": 1}, tmp_path / "m.pt")
    assert main(["eval", str(tmp_path / "m.pt"), "--dataset", "cifar10", "--data-dir", str(cifar_dir),
                 "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "eval-m-test.json").read_text())["images"] == 100
