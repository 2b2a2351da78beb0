import numpy as np
import pytest

from ghostmixnet.config import make_config
from ghostmixnet.deploy.bench import format_bench, run_bench
from ghostmixnet.deploy.runtimes import installed
from ghostmixnet.device import native_cpu_support


def test_bench_times_openvino_beside_onnx_runtime_or_says_which_extra(trained_like):
    pytest.importorskip("onnxruntime")
    logged = []
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    rows, info = run_bench((trained_like(), make_config("paper", width=0.125)), batch_size=8, threads=(1, 2),
                           repeats=3, warmup=1, backends=("ort", "openvino", "openvino-int8"),
                           test=(images, np.zeros(12, dtype=np.int64)), log=logged.append)
    if not installed("openvino"):
        assert [r.backend for r in rows] == ["ort"]
        assert any("pip install 'ghostmixnet[openvino]'" in line for line in logged)
        return
    assert [r.backend for r in rows] == ["ort", "openvino", "openvino-int8"]
    # OpenVINO computes in bf16 by default where the CPU has native bf16, and its row says so
    openvino = "bf16" if native_cpu_support("bf16") is True else "fp32"
    assert [r.arithmetic for r in rows] == ["fp32", openvino, "int8"]
    assert (openvino == "bf16") == ("bf16 (OpenVINO's default on this CPU)" in rows[1].detail)
    assert rows[1].accuracy == rows[0].accuracy  # the same fp32 model, computed by two runtimes
    assert all(r.throughput > 0 and list(r.latency_ms) == [1, 2] for r in rows)
    assert "| openvino-int8 |" in format_bench(rows, info, 12)
