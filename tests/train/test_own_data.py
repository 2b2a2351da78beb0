"""Your own classes, end to end: each form of data trains, resumes exactly, evaluates and predicts; the class
names and normalisation travel with the model into every command and file; a model whose logit width is not
its class list's length is refused; fine-tuning from the shipped weights replaces only the classifier."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import write_cifar100, write_class_folder
from test_run import quiet

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.data.cifar import MEAN
from ghostmixnet.errors import CheckpointError, DataError, RunError
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.model.checkpoint import load_checkpoint, save_atomic
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.weights import read_weights, shipped_weights
from ghostmixnet.train.parts import build_training
from ghostmixnet.train.run import train


def tiny(**overrides):
    values = dict(width=0.125, epochs=2, batch_size=12, num_workers=0, compile=False, holdout=0.2, lr=3e-3,
                  augment="basic", mix_prob=0.0)
    return make_config("paper", **{**values, **overrides})


def split_folders(root):
    write_class_folder(root / "train", per_class=12)
    write_class_folder(root / "val", per_class=4, seed=1)
    write_class_folder(root / "test", per_class=4, seed=2)
    return root


FORMS = {
    "one folder": lambda root, shared: (shared, {"dataset": "folder"}, ("cat", "dog", "fox")),
    "split folders": lambda root, shared: (split_folders(root), {"dataset": "folder"}, ("cat", "dog", "fox")),
    "cifar100": lambda root, shared: (write_cifar100(root, n_train=300, n_test=100),
                                      {"dataset": "cifar100", "val_size": 100},
                                      tuple(f"fine{i}" for i in range(100))),
}


@pytest.mark.parametrize("form", FORMS)
def test_each_form_of_data_trains_resumes_exactly_evaluates_and_predicts(form, class_folder, tmp_path, capsys):
    data, overrides, classes = FORMS[form](tmp_path / "data", class_folder)
    cfg = tiny(**overrides)
    train(cfg, data, tmp_path / "straight", echo=quiet)
    train(cfg, data, tmp_path / "resumed", stop_after=1, echo=quiet)
    train(cfg, data, tmp_path / "resumed", resume=True, echo=quiet)
    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "resumed"))
    assert all(torch.equal(t, b["model"][k]) for k, t in a["model"].items())
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert tuple(saved["classes"]) == classes and saved["num_classes"] == len(classes)
    assert saved["mean"] != list(MEAN) and len(saved["std"]) == 3  # measured on the training split
    assert json.loads((tmp_path / "straight" / "run.json").read_text())["data"]["dataset"] == overrides["dataset"]
    assert tuple(json.loads((tmp_path / "straight" / "test.json").read_text())["per_class_accuracy"]) == classes

    assert main(["eval", str(tmp_path / "straight"), "--data-dir", str(data), "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "straight" / "eval-best-test.json").read_text())
    assert tuple(report["per_class_accuracy"]) == classes
    images = tmp_path / "images"
    write_class_folder(images, per_class=2, seed=5)
    capsys.readouterr()
    out = tmp_path / "answers.csv"
    assert main(["predict", str(tmp_path / "straight"), str(images), "--out", str(out), "--device", "cpu"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and {r["label"] for r in rows} <= set(classes)


def test_a_run_on_a_folder_is_refused_to_resume_once_its_classes_change(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=10)
    train(tiny(dataset="folder", epochs=1), data, tmp_path / "run", echo=quiet)
    write_class_folder(data / "../more", classes=("owl",), per_class=10)
    (data / "../more" / "owl").rename(data / "owl")
    changed = r"has changed since the run started: its classes are now cat, dog, fox, owl \(4\), were cat, dog, fox"
    with pytest.raises(RunError, match=changed):
        train(tiny(dataset="folder", epochs=2), data, tmp_path / "run", resume=True, echo=quiet)


@pytest.fixture(scope="module")
def folder_run(class_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("own") / "run"
    train(tiny(dataset="folder", epochs=3), class_folder, run, echo=quiet)
    return run


def test_class_names_reach_the_onnx_metadata_the_int8_model_and_predict_on_them(folder_run, class_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from ghostmixnet.deploy.export import export_checkpoint
    from ghostmixnet.deploy.quantize import quantize_checkpoint
    from ghostmixnet.infer.onnx import OnnxClassifier

    cfg = model_from_checkpoint(folder_run / "best.pt")[1]
    fp = export_checkpoint(folder_run, tmp_path / "m.onnx", class_folder, verify_images=8, echo=quiet)
    q = quantize_checkpoint(folder_run, tmp_path / "m-int8.onnx", class_folder, calibration_count=12,
                            eval_images=12, echo=quiet)
    for path in (fp, q):
        onnx = OnnxClassifier(path)
        assert onnx.classes == ("cat", "dog", "fox") and onnx.config().class_names == onnx.classes
        assert json.loads(onnx.metadata["mean"]) == list(cfg.mean)
    out = tmp_path / "onnx.csv"
    assert main(["predict", str(q), str(class_folder / "dog"), "--out", str(out), "--device", "cpu"]) == 0
    labels = [r["label"] for r in csv.DictReader(out.open())]
    assert len(labels) == 20 and set(labels) <= {"cat", "dog", "fox"}


def test_class_names_reach_serve_model_and_its_answers(folder_run, class_folder):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from ghostmixnet.serve.app import create_app
    from ghostmixnet.serve.served import load_served_model

    served = load_served_model(folder_run, torch.device("cpu"))
    client = TestClient(create_app(served))
    assert client.get("/model").json()["classes"] == ["cat", "dog", "fox"]
    assert 'id="classes"' in client.get("/").text  # where the page lists them
    photo = next((class_folder / "fox").glob("*.png"))
    answer = client.post("/predict", files=[("files", (photo.name, photo.read_bytes(), "image/png"))]).json()
    top = answer["results"][0]["top"]
    assert {t["label"] for t in top} == {"cat", "dog", "fox"} and top[0]["probability"] >= top[-1]["probability"]


def test_a_model_whose_logit_width_differs_from_its_class_list_is_refused_at_load(tmp_path, capsys):
    model = build_model("ghostmixnet", num_classes=3, width=0.125)
    good = tiny(dataset="folder").for_data(("a", "b", "c"), ((0.5,) * 3, (0.25,) * 3))
    save_atomic({"model": model.state_dict(), "config": good.to_dict()}, tmp_path / "good.pt")
    assert model_from_checkpoint(tmp_path / "good.pt")[1].class_names == ("a", "b", "c")
    listed_four = {**good.to_dict(), "classes": ["a", "b", "c", "d"]}
    save_atomic({"model": model.state_dict(), "config": listed_four}, tmp_path / "four.pt")
    with pytest.raises(CheckpointError, match="classes names 4 classes but num_classes is 3"):
        model_from_checkpoint(tmp_path / "four.pt")
    wide = build_model("ghostmixnet", num_classes=5, width=0.125)
    save_atomic({"model": wide.state_dict(), "config": good.to_dict()}, tmp_path / "wide.pt")
    assert main(["predict", str(tmp_path / "wide.pt"), str(tmp_path / "x.png")]) == 1
    assert "wide.pt" in capsys.readouterr().err


def test_finetuning_from_the_shipped_weights_replaces_only_the_classifier(class_folder, tmp_path):
    cfg = make_config("finetune", epochs=1, batch_size=18, compile=False, num_workers=0, backbone_lr_scale=0.1)
    cfg = cfg.for_data(("cat", "dog", "fox"), ((0.5,) * 3, (0.25,) * 3))
    lines = []
    t = build_training(cfg, torch.device("cpu"), steps_per_epoch=2, echo=lines.append)
    shipped = read_weights(shipped_weights())["model"]
    own = t.model.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in shipped.items() if not k.startswith("fc."))
    assert own["fc.weight"].shape[0] == 3 and shipped["fc.weight"].shape[0] == 10
    assert lines == [f"fine-tuning: every layer but the classifier starts from {shipped_weights().name} (10 classes); "
                     "the classifier is new, for 3 classes"]
    rates = sorted({g["lr"] for g in t.optimizer.param_groups})
    assert rates == pytest.approx([cfg.lr * cfg.backbone_lr_scale, cfg.lr])
    # Ten classes of other names (digits) get a new classifier too; CIFAR-10's own ten keep the shipped one.
    digits = cfg.for_data(tuple("0123456789"), None)
    fc = build_training(digits, torch.device("cpu"), 2, echo=lines.append).model.fc.weight
    assert "the classifier is new, for 10 classes" in lines[-1] and not torch.equal(fc, shipped["fc.weight"].float())
    same = make_config("finetune", dataset="cifar10", compile=False)
    fc = build_training(same, torch.device("cpu"), 2, echo=lines.append).model.fc.weight
    assert "every layer including its 10-class classifier" in lines[-1]
    assert torch.equal(fc, shipped["fc.weight"].float())
    summary = train(make_config("finetune", epochs=1, batch_size=18, compile=False, num_workers=0), class_folder,
                    tmp_path / "run", echo=quiet)
    assert "fine-tuning: every layer but the classifier" in (tmp_path / "run" / "train.log").read_text()
    assert summary["test_acc"] >= 0 and np.isfinite(summary["best_val_acc"])


def test_an_unreadable_image_stops_a_run_in_one_line_or_is_left_out_with_skip_bad(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=10)
    (data / "dog" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"broken.png.*\(or pass --skip-bad to leave such files out\)"):
        train(tiny(dataset="folder", epochs=1), data, tmp_path / "run", echo=quiet)
    assert not (tmp_path / "run").exists()  # nothing left behind
    train(tiny(dataset="folder", epochs=1), data, tmp_path / "run", echo=quiet, skip_bad=True)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "skipped" in log and "broken.png" in log


def test_pack_keeps_the_class_list_in_the_weights_file(folder_run, class_folder, tmp_path):
    assert main(["pack", str(folder_run), "--out", str(tmp_path)]) == 0
    (packed,) = tmp_path.glob("ghostmixnet_folder-*.safetensors")
    assert model_from_checkpoint(packed)[1].class_names == ("cat", "dog", "fox")
    out = tmp_path / "packed.csv"
    assert main(["predict", str(packed), str(class_folder / "cat"), "--out", str(out), "--device", "cpu"]) == 0
    assert {r["label"] for r in csv.DictReader(out.open())} <= {"cat", "dog", "fox"}
