import pytest
from conftest import load_benchmark

from ghostmixnet.config import make_config
from ghostmixnet.model.checkpoint import save_atomic

pytest.importorskip("executorch")


def _snr_at(out: str, node: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith(node + " "))
    return float(line.split(" dB")[0].split()[-1])


def test_the_layer_report_finds_the_fixed_fault(trained_like, cifar_dir, tmp_path, capsys):
    bench = load_benchmark("int8_layers")
    checkpoint = tmp_path / "best.pt"  # BatchNorm statistics as after training: folding has work to do
    cfg = make_config("paper", width=0.125, val_size=50)
    save_atomic({"model": trained_like().state_dict(), "config": cfg.to_dict(), "epoch": 1}, checkpoint)
    args = [str(checkpoint), "--data-dir", str(cifar_dir), "--images", "40", "--layer-images", "8",
            "--calibration", "16"]
    bench.main(args)
    now = capsys.readouterr().out
    assert now.splitlines()[-1].startswith("40 test images: float ") and "top-1 agreement" in now
    bench.main(args + ["--bn-affine"])
    before = capsys.readouterr().out
    # the first block's primary convolution: int8 rounding alone now, a different function before the fix
    assert _snr_at(now, "conv2d_3") > _snr_at(before, "conv2d_3") + 3
