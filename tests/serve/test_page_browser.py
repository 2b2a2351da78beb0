"""The web page in a real headless Chromium: load it, upload a CIFAR-10 image, read the predicted label."""

import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium installed (Debian: apt-get install chromium); .ci/run installs it where it can",
                allow_module_level=True)
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

from ghostmixnet.config import make_config  # noqa: E402
from ghostmixnet.data.cifar import CLASSES, load_cifar10  # noqa: E402
from ghostmixnet.model.checkpoint import save_atomic  # noqa: E402
from ghostmixnet.serve.app import create_app  # noqa: E402
from ghostmixnet.serve.served import load_served_model  # noqa: E402
from ghostmixnet.serve.uploads import Limits  # noqa: E402

# What a sandboxed, offline machine needs: no GPU, no sandbox as root, no background connections.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import uvicorn

    from ghostmixnet.model.factory import build_model

    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    from ghostmixnet.infer.calibrate import Calibration

    # A threshold no image reaches, so that the page must show its "not sure" mark.
    save_atomic({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                 "config": make_config("paper", width=0.125).to_dict(), "epoch": 1,
                 "calibration": Calibration(0.8, 1e6, images=10, fitted_on="a test").to_dict()}, folder / "best.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(load_served_model(folder, torch.device("cpu")), Limits())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def cifar_png(path, real_data_dir_or_none) -> str:
    """A real CIFAR-10 test image when the data are here (its label returned), else a synthetic one."""
    if real_data_dir_or_none is not None:
        test = load_cifar10(real_data_dir_or_none, train=False)
        Image.fromarray(test.images[0]).save(path)
        return CLASSES[int(test.labels[0])]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return ""


def test_the_page_classifies_an_uploaded_image(server, tmp_path, request):
    from pathlib import Path

    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    image = tmp_path / "cifar.png"
    cifar_png(image, shared if (shared / "cifar-10-batches-py").is_dir() else None)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(server)
            page.wait_for_function("document.getElementById('model').textContent.startsWith('ghostmixnet')")
            page.set_input_files("#files", str(image))
            page.wait_for_selector(".result .label", timeout=30_000)
            label = page.text_content(".result .label")
            assert label in CLASSES
            assert len(page.query_selector_all(".result .bar")) == 5
            assert page.get_attribute(".result img", "src").startswith("data:image/png;base64,")
            assert "ms on the server" in page.text_content("#latency")
            assert "probabilities calibrated (temperature 0.80)" in page.text_content("#model")
            serving = page.text_content("#serving")  # the model's own view, no data to measure it on
            assert serving.startswith("served on torch with 1 view: accuracy not measured here"), serving
            assert page.is_visible(".result .unsure")
            assert page.text_content(".result .unsure") == "not sure: maybe none of these classes"
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert Image.open(io.BytesIO((tmp_path / "page.png").read_bytes())).size[0] > 100
