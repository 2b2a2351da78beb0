"""``benchmarks/serve_load.py``, bounded: a few seconds of load on two runtimes, and a short soak, without errors."""

import re

import pytest
import torch

pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'ghostmixnet[serve]'")
pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed: pip install 'ghostmixnet[deploy]'")
from conftest import load_benchmark  # noqa: E402

from ghostmixnet.config import make_config  # noqa: E402
from ghostmixnet.model.checkpoint import save_atomic  # noqa: E402


def test_the_load_benchmark_serves_each_runtime_without_errors(tmp_path, cifar_dir, capsys):
    from ghostmixnet.model.factory import build_model

    torch.manual_seed(0)
    save_atomic({"model": build_model("ghostmixnet", width=0.125).state_dict(),
                 "config": make_config("paper", width=0.125, val_size=50).to_dict(), "epoch": 1},
                tmp_path / "best.pt")
    load_benchmark("serve_load").main([str(tmp_path), "--data-dir", str(cifar_dir), "--runtimes", "torch,onnxruntime",
                                       "--seconds", "1.5", "--concurrency", "1,8", "--soak", "3"])
    out = capsys.readouterr().out
    rows = re.findall(r"^\s*(\S+), +(\d+) clients: +([\d.]+) requests/s, p50 +([\d.]+) ms, p99 +([\d.]+) ms, "
                      r"(\d+) requests, (\d+) errors$", out, re.M)
    assert [(r[0], r[1]) for r in rows] == [("torch", "1"), ("torch", "8"), ("onnxruntime", "1"), ("onnxruntime", "8")]
    assert all(float(r[2]) > 0 and int(r[5]) > 0 and r[6] == "0" for r in rows), out
    assert out.count("== runtime ") == 2 and "images/s in batches" in out  # each runtime's own speed beside
    soak = re.search(r"^soak, 32 clients for 3 s on onnxruntime: .* (\d+) requests, (\d+) errors$", out, re.M)
    assert soak and int(soak.group(1)) > 0 and soak.group(2) == "0", out
    assert re.search(r"^requests_per_s_at_8: [\d.]+$", out, re.M)
