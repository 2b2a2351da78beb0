import pytest

from ghostmixnet.cli import main
from ghostmixnet.deploy import bench as bench_module
from ghostmixnet.deploy import runtimes
from ghostmixnet.deploy import sizes as sizes_module


def test_info_deploy_lists_each_format_and_times_each_runtime(monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    # ExecuTorch's exports take minutes: its own tests are in tests/deploy/test_pte.py
    only_onnxruntime = lambda runtime: runtime == "onnxruntime"  # noqa: E731
    for module in (runtimes, bench_module, sizes_module):
        monkeypatch.setattr(module, "installed", only_onnxruntime)
    assert main(["info", "ghostmixnet", "--width", "0.125", "--deploy"]) == 0
    captured = capsys.readouterr()
    listed = next(line for line in captured.out.splitlines() if line.startswith("file size per format:"))
    assert "safetensors fp16" in listed and "ONNX fp32" in listed and "ONNX int8" in listed
    assert "peak activation memory, batch 1:" in captured.out
    assert "| ort-int8 |" in captured.out and "batch-1 p50 ms, 1 thread" in captured.out
    assert "pip install 'ghostmixnet[executorch]'" in captured.err  # the formats and runtimes left out, and why
    assert "pip install 'ghostmixnet[openvino]'" in captured.err
