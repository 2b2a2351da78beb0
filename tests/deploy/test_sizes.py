import pytest

from ghostmixnet.cli import main
from ghostmixnet.deploy import bench, runtimes, sizes


def test_info_deploy_lists_each_format_and_times_each_runtime(monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    # ExecuTorch's exports take minutes; its sizes and timings are the same code path as ONNX's (tests/deploy/test_pte.py)
    only_onnxruntime = lambda runtime: runtime == "onnxruntime"  # noqa: E731
    for module in (runtimes, bench, sizes):
        monkeypatch.setattr(module, "installed", only_onnxruntime)
    assert main(["info", "ghostmixnet", "--width", "0.125", "--deploy"]) == 0
    captured = capsys.readouterr()
    sizes = next(line for line in captured.out.splitlines() if line.startswith("file size per format:"))
    assert "safetensors fp16" in sizes and "ONNX fp32" in sizes and "ONNX int8" in sizes
    assert "peak activation memory, batch 1:" in captured.out
    assert "| ort-int8 |" in captured.out and "batch-1 p50 ms, 1 thread" in captured.out
    assert "pip install 'ghostmixnet[executorch]'" in captured.err  # the formats and runtimes left out, and why
    assert "pip install 'ghostmixnet[openvino]'" in captured.err
