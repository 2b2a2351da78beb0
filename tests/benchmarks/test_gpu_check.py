"""The GPU check, run end to end on the CPU with a tiny model, budget and data (every section)."""

import json

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark("gpu_check")


def test_the_check_runs_every_section_on_the_cpu(gpu_check, cifar_dir, tmp_path, capsys):
    out = tmp_path / "report"
    gpu_check.main(["--data-dir", str(cifar_dir), "--out", str(out), "--device", "cpu", "--budget", "2",
                    "--width", "0.125", "--batch-size", "16", "--val-size", "50", "--steps", "2", "--warmup", "1",
                    "--reference-steps", "2", "--phase-steps", "2", "--workers", "0", "--inference-batch", "32",
                    "--latency-repeats", "2", "--batch-repeats", "2", "--no-compile", "--max-epochs", "2",
                    "--reserve", "5", "--variant", "nchw:channels_last=false"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"{gpu_check.HEADLINE}: ")
    report = json.loads((out / "report.json").read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch"]
    throughput = report["throughput"]
    for name in ("reference", "default", "nchw"):
        assert throughput[name]["images_per_s"] > 0, throughput[name]
    assert throughput["reference"]["switches"]["augment_backend"] == "torchvision"
    assert throughput["default"]["switches"]["augment_backend"] == "batched"
    assert throughput["default_over_reference"] > 0
    assert set(throughput["default"]["phases_ms_per_step"]) == {"data", "augment", "forward_backward", "optimizer"}
    assert all(v["host_ms"] >= 0 and v["device_ms"] >= 0 for v in throughput["default"]["phases_ms_per_step"].values())
    for name in ("eager-fp32", "eager-bf16"):
        assert report["inference"][name]["latency_ms_p50"] > 0 and report["inference"][name]["batch_images_per_s"] > 0
    assert report["torchrun"]["ok"], report["torchrun"]["output_tail"]
    assert report["torchrun"]["backend"] == "gloo"
    epochs = report["epochs"]
    assert [r["epoch"] for r in epochs["epochs"]] == [1, 2]
    assert epochs["epochs"][0]["published_test_acc"] == 53.38
    assert all(0 <= r["val_acc"] <= 1 and 0 <= r["test_acc"] <= 1 for r in epochs["epochs"])
    assert epochs["projected_200_epochs_minutes"] > 0 and 0 <= epochs["final_test_acc"] <= 1
    assert epochs["config"]["recipe"] == "paper" and epochs["config"]["epochs"] == 200
    markdown = (out / "report.md").read_text()
    for heading in ("Training throughput", "Where a default-path step", "Inference", "torchrun", "epoch by epoch"):
        assert heading in markdown


def test_a_variant_may_change_only_compute_switches(gpu_check):
    assert gpu_check.parse_variant("g:compile_mode=reduce-overhead,channels_last=true") == (
        "g", {"compile_mode": "reduce-overhead", "channels_last": True})
    with pytest.raises(SystemExit, match="not a compute switch"):
        gpu_check.parse_variant("x:lr=0.1")
    with pytest.raises(SystemExit, match="expected NAME"):
        gpu_check.parse_variant("nothing")


def test_the_report_names_skipped_and_failed_sections(gpu_check):
    report = {"environment": {"device": "cpu"}, "throughput": {"skipped": "--skip"}, "inference": {"skipped": "--skip"},
              "torchrun": {"error": "RuntimeError: NCCL failed"}, "epochs": {"skipped": "--skip"}}
    text = gpu_check.markdown(report)
    assert "## Inference" not in text and "## torchrun" not in text and "Training throughput" not in text
    assert "- torchrun: RuntimeError: NCCL failed" in text
    assert "Skipped: throughput, inference, epochs." in text
