"""Shared fixtures: a tiny CIFAR-10 folder in the official format, the real data when present, a stand-in
for the shipped weights."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import pickle
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from ghostmixnet.config import make_config
from ghostmixnet.model.checkpoint import save_atomic
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.weights import write_weights

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` each of the two processes computes on one core (see _threads), and so do the runs the
    # tests start as subprocesses: a run resumed in a subprocess then adds up its floats as the test's own did.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
SHARED_DATA = REPO.parent / "shared" / "data"


def write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """Write (N, 32, 32, 3) uint8 images as an official CIFAR-10 batch (rows of R, G, B planes)."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"synthetic", b"labels": list(labels), b"data": rows,
                     b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}, f, protocol=2)


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Images whose mean colour depends on the class, so a tiny model can learn something."""
    rng = np.random.default_rng(seed)
    labels = [i % 10 for i in range(n)]
    base = np.array([[25 * c, 255 - 25 * c, (80 * c) % 256] for c in labels], dtype=np.float32)
    noise = rng.normal(0, 40, size=(n, 32, 32, 3))
    images = np.clip(base[:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


# The tests that load OpenVINO's and ExecuTorch's native runtimes run in a pytest process of their own
# (tests/deploy/test_isolated.py): their thread pools and kernels then cannot touch the training tests' process.
collect_ignore = [] if os.environ.get("GHOSTMIXNET_ISOLATED") else ["deploy/isolated"]


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """A data folder holding ``cifar-10-batches-py`` with 5 x 40 training and 100 test images."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", *synthetic_images(40, seed=i))
    write_batch(folder / "test_batch", *synthetic_images(100, seed=99))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"]}, f)
    return root


def write_class_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 20,
                       seed: int = 0) -> Path:
    """Class sub-folders of PNG photos of various sizes (some RGBA, some grey) whose colour depends on the class,
    so a tiny model can learn them; returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        colour = np.array([(97 * c) % 256, 255 - (61 * c) % 256, (151 * c + 40) % 256], dtype=np.float32)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(24, 72, 2))
            pixels = np.clip(colour + rng.normal(0, 35, (h, w, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            image = image.convert("RGBA") if i % 7 == 3 else image.convert("L").convert("RGB") if i % 7 == 5 else image
            image.save(root / name / f"{name}-{i:03d}.png")
    return root


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """CIFAR-100's official layout (train, test, meta) of random images, labels i % 100 (fine) and i % 20
    (coarse), in ``root/cifar-100-python``; returns ``root``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        fine = [i % 100 for i in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072), b"fine_labels": fine,
                         b"coarse_labels": [i % 20 for i in range(n)], b"filenames": [b"x.png"] * n,
                         b"batch_label": b"synthetic"}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, f, protocol=2)
    return root


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory) -> Path:
    """One folder of three classes (cat, dog, fox), 20 photos each, from which a run holds out its splits."""
    return write_class_folder(tmp_path_factory.mktemp("photos") / "photos")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The shared real CIFAR-10, or a skip when this checkout has no ``../shared/data`` beside it."""
    if not (SHARED_DATA / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip("real CIFAR-10 not found at ../shared/data")
    return SHARED_DATA


@pytest.fixture
def tiny_config():
    """A config for a seconds-long run: width 0.125, small batches, 2 epochs, 50-image validation split."""
    def make(**overrides):
        values = dict(width=0.125, epochs=2, batch_size=32, val_size=50, num_workers=0, compile=False)
        values.update(overrides)
        return make_config(values.pop("recipe", "paper"), **values)
    return make


@pytest.fixture
def trained_like():
    """Builds a tiny model with random BatchNorm statistics, as after training, so folding has work to do."""
    from ghostmixnet.model.factory import build_model

    def make(name: str = "ghostmixnet") -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model(name, width=0.125)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        return model.eval()
    return make


# Used by model/test_weights.py and model/test_factory.py. It lives here rather than in tests/model/conftest.py:
# conftest files outside packages share the module name ``conftest``, so a second one would shadow this file
# for the ``from conftest import ...`` of the test modules.
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random full-width model and its weights file, as the shipped ones would be written."""
    torch.manual_seed(0)
    model = build_model("ghostmixnet").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("weights")
    path = write_weights(model.state_dict(), make_config("fast"), folder, "ghostmixnet_cifar10",
                         {"test_accuracy": 0.1})
    return model, path


class Exploit:
    """Unpickling this runs ``open(path, 'w')``: a stand-in for arbitrary code execution."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def exploit_pickle(tmp_path) -> tuple[Path, Path]:
    """A pickle whose payload would create a file; returns (pickle path, path it would create)."""
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({b"data": Exploit(target), b"labels": [0]}))
    return path, target


@pytest.fixture(autouse=True)
def _threads():
    # Keep CPU tests predictable on a 2-core CI machine: two threads in one process, or one in each of the two
    # processes of `pytest -n 2` (pytest-xdist), so that the cores are never oversubscribed.
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module, so its ``main(argv)`` runs in-process."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def serve_cache(tmp_path_factory):
    """``GHOSTMIXNET_CACHE`` for the whole session (here rather than in tests/serve/conftest.py, for the reason
    above): what the package caches (serving files and measurements, teacher logits) never reaches the user's
    cache folder, and the service's tests share their exports."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GHOSTMIXNET_CACHE", str(folder))
        yield folder


# The bad-input harness's files (tests/bad_input), made once per test process.
@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A width-0.125 checkpoint with random weights, as a run's best.pt."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_atomic({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                 "config": make_config("paper", width=0.125, val_size=50).to_dict(), "epoch": 1}, path)
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_checkpoint) -> Path:
    """``tiny_checkpoint`` packed as a hash-named safetensors file."""
    from ghostmixnet.deploy.pack import pack_checkpoint

    return pack_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("packed"))


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_checkpoint) -> Path:
    """``tiny_checkpoint`` exported to ONNX."""
    from ghostmixnet.deploy.export import export_onnx
    from ghostmixnet.infer.load import model_from_checkpoint

    net, cfg, _ = model_from_checkpoint(tiny_checkpoint)
    return export_onnx(net, cfg, tmp_path_factory.mktemp("onnx") / "model.onnx")


INT8_AGREEMENT = 0.985
"""Top-1 agreement every int8 export of the shipped weights keeps with their float model on real test images
(measured 99.8% for ONNX Runtime and OpenVINO and 100% for ExecuTorch on 500; ExecuTorch's before its fix: 96.8%)."""


@pytest.fixture(scope="session")
def shipped_on_real_images(real_data_dir):
    """The shipped weights, the float logits of 500 real test images, and 256 training images to calibrate an
    int8 export on (as ``bench`` does); skips without the real data."""
    from ghostmixnet.data.sources import load_data
    from ghostmixnet.data.splits import calibration_images
    from ghostmixnet.infer.load import model_from_checkpoint
    from ghostmixnet.infer.logits import normalize_uint8

    model, cfg, _ = model_from_checkpoint("pretrained")
    splits = load_data(cfg.dataset, real_data_dir, **cfg.data_fields())
    cpu = torch.device("cpu")
    test = normalize_uint8(splits.test.images[:500], cpu, normalization=cfg.normalization)
    with torch.no_grad():
        logits = model.eval()(test)
    calibration = calibration_images(splits.train, 256, seed=cfg.split_seed + 2)
    return collections.namedtuple("Shipped", "model cfg test logits calibration")(model, cfg, test, logits,
                                                                                  calibration)


@pytest.fixture(scope="session")
def shipped_int8_onnx(shipped_on_real_images, tmp_path_factory) -> Path:
    """The shipped weights as ``quantize`` writes them (int8 QDQ ONNX), calibrated on real training images."""
    from ghostmixnet.deploy.export import export_onnx
    from ghostmixnet.deploy.quantize import quantize_onnx

    s, folder = shipped_on_real_images, tmp_path_factory.mktemp("shipped-int8")
    float_path = export_onnx(s.model, s.cfg, folder / "float.onnx")
    return quantize_onnx(float_path, folder / "int8.onnx", s.calibration, normalization=s.cfg.normalization)


def top1_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """The share of images on which two sets of logits pick the same class."""
    return float((a.argmax(1) == b.argmax(1)).float().mean())


@pytest.fixture(scope="session")
def stopped_run(tmp_path_factory, cifar_dir) -> Path:
    """A run on the tiny synthetic CIFAR-10 stopped after the first of two epochs (copy it before changing it)."""
    from ghostmixnet.train.run import train

    run = tmp_path_factory.mktemp("run") / "run"
    cfg = make_config("paper", width=0.125, epochs=2, batch_size=32, val_size=50, num_workers=0, compile=False)
    train(cfg, cifar_dir, run, stop_after=1, echo=lambda _: None)
    return run


# What each kind of bad input gave (counted by tests/bad_input/harness.py), in the terminal summary, where the CI
# log keeps it: each xdist worker sends its counts to the controller, which adds them up.
_OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def _harness_outcomes() -> dict[str, dict[str, int]]:
    harness = sys.modules.get("harness")
    return {kind: dict(counts) for kind, counts in harness.OUTCOMES.items()} if harness is not None else {}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["bad_input"] = json.dumps(_harness_outcomes())


def pytest_testnodedown(node, error):
    for kind, counts in json.loads(getattr(node, "workeroutput", {}).get("bad_input", "{}")).items():
        _OUTCOMES[kind].update(counts)


def pytest_terminal_summary(terminalreporter):
    for kind, counts in _harness_outcomes().items():  # run without xdist: this process's own
        _OUTCOMES[kind].update(counts)
    if _OUTCOMES:
        terminalreporter.section("bad input, by kind: cases and outcomes")
        for kind, counts in sorted(_OUTCOMES.items()):
            terminalreporter.write_line(f"{kind} ({sum(counts.values())}): "
                                        + "; ".join(f"{n} x {what}" for what, n in counts.most_common()))
