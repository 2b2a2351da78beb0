import numpy as np
import pytest
import torch

from ghostmixnet.cli import main
from ghostmixnet.config import make_config
from ghostmixnet.deploy.bench import fast_model, format_bench, percentile, run_bench, time_calls
from ghostmixnet.model.checkpoint import save_atomic


def test_time_calls_excludes_warmup_and_percentiles_interpolate():
    calls = []
    times = time_calls(lambda: calls.append(1), repeats=5, warmup=3)
    assert len(calls) == 8 and len(times) == 5 and all(t >= 0 for t in times)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 90) == pytest.approx(9.0)


def test_fast_path_computes_the_same_function(trained_like):
    model = trained_like()
    fast, detail = fast_model(model)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    out = fast(x).float()
    # bf16 keeps 8 bits of mantissa: logits agree to a few hundredths, and so do the decisions.
    tolerance = 0.15 if "bf16" in detail else 1e-4
    assert (out - reference).abs().max() < tolerance
    assert (out.argmax(1) == reference.argmax(1)).float().mean() >= 0.9


@pytest.fixture
def tiny_checkpoint(tmp_path, trained_like):
    path = tmp_path / "best.pt"
    save_atomic({"model": trained_like().state_dict(), "config": make_config("paper", width=0.125).to_dict(),
                 "epoch": 1}, path)
    return path


def test_bench_times_every_backend_at_each_thread_count(tiny_checkpoint):
    pytest.importorskip("onnxruntime")
    # OpenVINO's and ExecuTorch's backends: tests/deploy/isolated/test_bench_runtimes.py
    backends = ("eager", "fast", "ort", "ort-int8")
    logged = []
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    rows, info = run_bench(str(tiny_checkpoint), batch_size=8, threads=(2, 1), repeats=3, warmup=1, backends=backends,
                           test=(images, np.zeros(12, dtype=np.int64)), log=logged.append)
    assert [r.backend for r in rows] == list(backends)
    for r in rows:
        assert list(r.latency_ms) == [1, 2]
        assert all(p90 >= p50 > 0 for p50, p90 in r.latency_ms.values())
        assert r.throughput > 0 and r.peak_share > 0 and 0 <= r.accuracy <= 1
    assert [r.arithmetic for r in rows][2:] == ["fp32", "int8"]
    assert info["int8_mb"] > 0 and info["macs"] > 0 and info["peak_int8"] > 0
    # every backend computes the same model: on the same images they mostly agree with eager's accuracy
    assert all(abs(r.accuracy - rows[0].accuracy) <= 0.35 for r in rows)
    table = format_bench(rows, info, 12)
    assert "| ort-int8 |" in table and "1.00x" in table and "batch-1 p50 ms, 1 thread |" in table
    assert "accuracy (12 test images)" in table
    # the floor: one image's multiply-adds at the measured peak, and each row's batch-1 median against it
    floor = 2 * info["macs"] / (info["peak_int8"] * 1e9) * 1e3
    assert f"int8 2 x {info['macs'] / 1e6:,.1f}M / {info['peak_int8']:,.0f} G = {floor:.2f} ms" in table
    ort_int8 = next(line for line in table.splitlines() if line.startswith("| ort-int8 |"))
    assert f"| {rows[3].latency_ms[2][0] / floor:.2f}x |" in ort_int8


def test_bench_cli_on_an_onnx_file_and_bad_input(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(tiny_checkpoint), "--out", str(onnx), "--verify-images", "0"]) == 0
    capsys.readouterr()
    assert main(["bench", str(onnx), "--batch-size", "4", "--repeats", "2", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| ort | onnxruntime, fp32, m.onnx |" in out and "parameters: " in out
    assert main(["bench", str(tmp_path / "nothing.pt")]) == 1
    assert "neither a model name" in capsys.readouterr().err
    assert main(["bench", "ghostmixnet", "--backends", "eager,gpu"]) == 1
    assert "unknown backend" in capsys.readouterr().err
    assert main(["bench", "ghostmixnet", "--batch-size", "0"]) == 2  # refused as it is parsed
    assert "argument --batch-size: must be an integer of at least 1" in capsys.readouterr().err
