"""The README's screenshot of the page: the service (the shipped weights unless MODEL names another) in
headless Chromium, given three CIFAR-10 test images and one generated image of no class.

Starts the service on a free port in this process, uploads the images through the page's file input as a
user would, waits for the answers, and saves a full-page PNG. Needs the serve extra, Playwright's Python
package and a Chromium (Debian: apt-get install chromium). Prints each answer as the page shows it.

    python benchmarks/serve_screenshot.py --data-dir ../shared/data --out docs/serve-page.png
"""

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import torch
import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from ghostmixnet.data.cifar import CLASSES, load_cifar10
from ghostmixnet.report.ood import synthetic_ood_sets
from ghostmixnet.serve.app import create_app
from ghostmixnet.serve.served import load_served_model

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve_in_thread(model: str, data_dir: Path) -> tuple[uvicorn.Server, str]:
    """The service as ``ghostmixnet serve MODEL --data-dir DATA_DIR`` runs it (auto runtime, one view)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(load_served_model(Path(model), torch.device("cpu"), "auto", 1, data_dir))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/"


def images(data_dir: Path, folder: Path, picks: list[int]) -> list[Path]:
    """The chosen test images (upscaled to 128 px, as a user's files would be) and one of smooth colour blobs."""
    test = load_cifar10(data_dir, train=False)
    paths = []
    for i in picks:
        path = folder / f"{CLASSES[int(test.labels[i])]}-{i}.png"
        Image.fromarray(test.images[i]).resize((128, 128), Image.NEAREST).save(path)
        paths.append(path)
    blob = synthetic_ood_sets(test.images, 1, seed=0)["smooth colour blobs"][0]
    Image.fromarray(blob).resize((128, 128), Image.BICUBIC).save(folder / "colour-blobs.png")
    return [*paths, folder / "colour-blobs.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="pretrained")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("serve-page.png"))
    parser.add_argument("--images", default="0,1,3", help="indices of the test images to show [0,1,3]")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium found (Debian: apt-get install chromium)")
    server, url = serve_in_thread(args.model, args.data_dir)
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
            files = images(args.data_dir, Path(tmp), [int(i) for i in args.images.split(",")])
            browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.startsWith('ghostmixnet')")
            page.set_input_files("#files", [str(f) for f in files])
            page.wait_for_selector(".result .label", timeout=120_000)
            for row in page.query_selector_all(".result"):
                print(" ".join(row.inner_text().split()))
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
