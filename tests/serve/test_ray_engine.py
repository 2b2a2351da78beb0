"""The service on Ray Serve: two replicas on loopback answer as the plain service does, and stop by themselves."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'ghostmixnet[ray]'")
pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed: pip install 'ghostmixnet[deploy]'")
from conftest import load_benchmark  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from ghostmixnet.config import make_config  # noqa: E402
from ghostmixnet.model.checkpoint import save_atomic  # noqa: E402
from ghostmixnet.serve.app import create_app  # noqa: E402
from ghostmixnet.serve.served import load_served_model  # noqa: E402
from ghostmixnet.serve.uploads import Limits  # noqa: E402

SERVE_LOAD = load_benchmark("serve_load")  # its free port and multipart body, as the load test posts


def post(port: int, body: bytes, kind: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body, headers={"Content-Type": kind})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def same_answers(a: dict, b: dict) -> None:
    for x, y in zip(a["results"], b["results"], strict=True):
        assert [t["label"] for t in x["top"]] == [t["label"] for t in y["top"]]
        assert [t["probability"] for t in x["top"]] == pytest.approx([t["probability"] for t in y["top"]], abs=1e-6)
        assert x["score"] == pytest.approx(y["score"], abs=1e-5) and x["sure"] == y["sure"]
        assert x["input_32x32"] == y["input_32x32"] and x["size"] == y["size"]


def test_two_replicas_on_ray_serve_answer_as_the_plain_service_does(tmp_path, serve_cache):
    torch.manual_seed(0)
    from ghostmixnet.model.factory import build_model

    run = tmp_path / "run"
    run.mkdir()
    save_atomic({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                 "config": make_config("paper", width=0.125).to_dict(), "epoch": 1}, run / "best.pt")
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    bodies = [SERVE_LOAD.multipart(image) for image in images]
    with TestClient(create_app(load_served_model(run, runtime="onnxruntime", views=1), Limits())) as plain:
        expected = [plain.post("/predict", content=body, headers={"Content-Type": kind}).json()
                    for body, kind in bodies]

    port = SERVE_LOAD.free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "ghostmixnet", "serve", str(run), "--engine", "ray",
                                   "--replicas", "2", "--runtime", "onnxruntime", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()
            # the command says it serves once every replica is up (Ray's proxy answers sooner, on the first)
            if "on Ray Serve, 2 replicas" in log.read_text():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert json.load(response)["status"] == "ok"
                break
            assert time.monotonic() < deadline, "Ray Serve did not become ready in 180 s:\n" + log.read_text()
            time.sleep(1)
        with ThreadPoolExecutor(16) as pool:  # concurrent requests: Ray spreads them over both replicas
            answers = list(pool.map(lambda b: post(port, *b), bodies * 8))
        for i, got in enumerate(answers):
            same_answers(got, expected[i % len(bodies)])
        assert len({a["replica"] for a in answers}) == 2, "both replicas should have answered"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10) as response:
            info = json.load(response)
        assert (info["engine"], info["replicas"], info["runtime"]) == ("ray", 2, "onnxruntime")
    finally:
        os.killpg(server.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
            pytest.fail("Ray Serve did not stop within 60 s of Ctrl-C:\n" + log.read_text())
    assert server.returncode == 0 and "stopping: Ray Serve and Ray shut down" in log.read_text()
