import pytest
from conftest import load_benchmark

pytest.importorskip("onnxruntime")


def test_the_profile_adds_up_kernel_time_by_operation_and_role(tiny_onnx, capsys):
    # OpenVINO's half runs where it is installed; it loads a native runtime, so it is left to the isolated tests
    load_benchmark("int8_profile").main([str(tiny_onnx), "--threads", "1", "--calls", "5", "--runtimes",
                                         "onnxruntime"])
    out = capsys.readouterr().out
    assert out.startswith("ONNX Runtime, 1 thread(s): ") and "| Conv |" in out
    assert "OpenVINO" not in out


def test_roles_follow_the_names_export_gives():
    role = load_benchmark("int8_profile").role
    assert role("/stages.0/stages.0.0/se/fc1/Conv") == "se"
    assert role("/stages.0/stages.0.0/cheap2/Conv") == "cheap"
    assert role("/stages.0/stages.0.0/primary2/Conv") == "primary"
    assert role("/stages/0/0/affine2/") == "affine"
