"""The service: every route, batching, and every kind of bad upload (the server stays up)."""

import asyncio
import dataclasses
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")
from fastapi.testclient import TestClient  # noqa: E402

from ghostmixnet.config import make_config  # noqa: E402
from ghostmixnet.data.cifar import CLASSES  # noqa: E402
from ghostmixnet.model.checkpoint import save_atomic  # noqa: E402
from ghostmixnet.serve.app import Batcher, create_app  # noqa: E402
from ghostmixnet.serve.served import load_served_model  # noqa: E402
from ghostmixnet.serve.uploads import Limits  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from ghostmixnet.model.factory import build_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    model = build_model("ghostmixnet", width=0.125)
    save_atomic({"model": model.state_dict(), "config": make_config("paper", width=0.125).to_dict(), "epoch": 1},
                folder / "best.pt")
    (folder / "test.json").write_text('{"accuracy": 0.5}')
    return load_served_model(folder, torch.device("cpu"))  # a run folder stands for its best.pt


def png(size=(40, 30), color="red", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def client(served, **limits) -> TestClient:
    """A test client whose app has started (its workers warmed up, /health ready)."""
    c = TestClient(create_app(served, Limits(**limits)))
    c.__enter__()  # runs the app's startup; the portal thread ends with the test process
    return c


def test_page_health_and_model(served):
    c = client(served)
    assert "GhostMixNet" in c.get("/").text and c.get("/health").json()["status"] == "ok"
    info = c.get("/model").json()
    assert info["name"].startswith("ghostmixnet (best.pt)") and info["classes"] == list(CLASSES)
    assert info["parameters"] > 0 and info["macs_per_image"] > 0 and info["test_accuracy"] == 0.5
    assert info["runtime"] == "torch" and info["views"] == 1 and info["accuracy"] is None  # no data: not measured
    assert info["speed"]["images_per_s"] > 0 and info["queue"]["max_batch"] >= 1
    assert "/predict" in c.get("/openapi.json").json()["paths"]


def test_health_says_ready_only_once_the_model_has_answered(served):
    calls = []
    slow = dataclasses.replace(served, classifiers=[lambda x: calls.append(len(x)) or served.classifiers[0](x)])
    app = create_app(slow, Limits())
    unstarted = TestClient(app)  # outside `with`: the app's startup (the warm-up) has not run
    assert unstarted.get("/health").status_code == 503 and unstarted.get("/health").json()["status"] == "starting"
    assert calls == []
    with TestClient(app) as started:
        assert started.get("/health").json()["status"] == "ok" and calls == [1]


def test_predict_several_images(served, monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("a request wrote to disk")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    c = client(served)
    files = [("files", ("a.png", png(), "image/png")),
             ("files", ("b.jpg", png((64, 48), "blue", "JPEG"), "image/jpeg"))]
    answer = c.post("/predict", files=files).json()
    assert answer["model"].startswith("ghostmixnet") and answer["latency_ms"] > 0
    a, b = answer["results"]
    assert (a["file"], a["size"], a["mode"]) == ("a.png", [40, 30], "RGB") and b["size"] == [64, 48]
    assert len(a["top"]) == 5 and all(t["label"] in CLASSES for t in a["top"])
    assert sum(t["probability"] for t in a["top"]) <= 1.0 + 1e-6
    assert a["input_32x32"].startswith("data:image/png;base64,")


def test_concurrent_requests_share_a_batch(served):
    async def run():
        batcher = Batcher(served, window=0.2, workers=1)
        images = [np.full((1, 32, 32, 3), i, np.uint8) for i in range(6)]
        results = await asyncio.gather(*(batcher.classify(x) for x in images))
        return batcher.batches, results

    batches, results = asyncio.run(run())
    assert batches == 1 and [r.shape for r in results] == [(1, len(CLASSES))] * 6


@pytest.mark.parametrize("case, status, message", [
    ("too big", 413, "at most"),
    ("bomb", 413, "pixels is over the limit"),
    ("not an image", 415, "not an image"),
    ("truncated", 400, "could not be decoded"),
    ("too many", 413, "at most 2"),
    ("json", 415, "multipart/form-data"),
    ("no files", 400, "no files"),
])
def test_bad_uploads_get_a_json_error_and_the_server_stays_up(served, case, status, message):
    c = client(served, max_bytes=50_000, max_pixels=100_000, max_files=2)
    good = ("files", ("a.png", png(), "image/png"))
    if case == "json":
        response = c.post("/predict", json={"image": "x"})
    elif case == "no files":
        response = c.post("/predict", data={"note": "hello"}, files=[("other", ("", b"", "text/plain"))])
    else:
        files = {"too big": [("files", ("big.bmp", png((200, 100), "red", "BMP"), "image/bmp"))],
                 "bomb": [("files", ("bomb.png", png((1000, 1000)), "image/png"))],
                 "not an image": [("files", ("x.png", b"%PDF-1.4 not an image", "image/png"))],
                 "truncated": [("files", ("t.png", png((64, 64), "green")[:120], "image/png"))],
                 "too many": [good, good, good]}[case]
        response = c.post("/predict", files=files)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert c.get("/health").status_code == 200
    assert c.post("/predict", files=[good]).status_code == 200


def test_an_onnx_model_is_served_too(served, tmp_path):
    import torch

    from ghostmixnet.deploy.export import export_onnx
    from ghostmixnet.model.factory import build_model

    torch.manual_seed(0)
    path = export_onnx(build_model("ghostmixnet", width=0.125).eval(), make_config("paper", width=0.125),
                       tmp_path / "m.onnx")
    onnx_served = load_served_model(path, torch.device("cpu"))
    c = client(onnx_served)
    assert c.get("/model").json()["format"] == "onnx"
    answer = c.post("/predict", files=[("files", ("a.png", png(), "image/png"))]).json()
    assert answer["model"] == "ghostmixnet (m.onnx)" and len(answer["results"][0]["top"]) == 5


def test_with_no_model_named_the_service_serves_the_shipped_weights():
    import torch

    from ghostmixnet.cli import build_parser
    from ghostmixnet.model.weights import read_weights, shipped_weights

    assert build_parser(["serve"]).parse_args(["serve"]).model == Path("pretrained")
    served = load_served_model(Path("pretrained"), torch.device("cpu"))
    recorded = json.loads(read_weights(shipped_weights())["metadata"]["test_accuracy"])
    assert served.info["file"] == str(shipped_weights()) and served.info["test_accuracy"] == recorded > 0.9
    assert served.views == 6 and served.info["parameters"] == 3_041_466  # the views its run evaluated with


def test_answers_carry_calibrated_probabilities_the_score_and_the_not_sure_mark(served):
    from ghostmixnet.infer.calibrate import Calibration
    from ghostmixnet.serve.uploads import decode_image

    files = [("files", ("a.png", png(), "image/png"))]
    plain = client(served).post("/predict", files=files).json()["results"][0]
    assert plain["sure"] is None and "note" not in plain  # no calibration: no mark either way
    assert client(served).get("/model").json()["calibration"] is None
    logits = served.logits(np.array(decode_image("a.png", png(), Limits())[0])[None])
    for threshold, sure in ((-1e6, True), (1e6, False)):
        calibration = Calibration(0.5, threshold, images=10, fitted_on="a test")
        c = client(dataclasses.replace(served, calibration=calibration))
        result = c.post("/predict", files=files).json()["results"][0]
        assert result["sure"] is sure and ("note" in result) is (not sure)
        assert result["score"] == pytest.approx(float(calibration.scores(logits)[0]), abs=1e-4)
        top = result["top"][0]
        assert top["probability"] == pytest.approx(float(calibration.probabilities(logits).max()), abs=1e-5)
        assert top["probability"] > plain["top"][0]["probability"]  # a temperature below 1 sharpens
        assert c.get("/model").json()["calibration"]["temperature"] == 0.5
