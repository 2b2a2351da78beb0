"""The model card benchmark, end to end on the CPU with a tiny weights file and tiny data."""

import json

import pytest
import torch
from conftest import load_benchmark

from ghostmixnet.config import make_config
from ghostmixnet.model.factory import build_model
from ghostmixnet.model.weights import write_weights


@pytest.fixture(scope="module")
def model_card():
    return load_benchmark("model_card")


def test_the_card_measures_a_weights_file(model_card, cifar_dir, tmp_path, trained_like, capsys):
    cfg = make_config("fast", width=0.125, val_size=50, tta_shift=1)
    model = trained_like()
    weights = write_weights(model.state_dict(), cfg, tmp_path, "tiny_cifar10", {"test_accuracy": 0.5})
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1}, checkpoint)
    out = tmp_path / "card"
    card = model_card.main(["--weights", str(weights), "--checkpoint", str(checkpoint), "--data-dir", str(cifar_dir),
                            "--out", str(out), "--ood-images", "16"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("model_card_test_accuracy: ")
    assert json.loads((out / "model-card.json").read_text()) == card
    assert (out / "reliability.png").stat().st_size > 0
    assert card["parameters"] == sum(p.numel() for p in build_model("ghostmixnet", width=0.125).parameters())
    assert card["recorded"]["test_accuracy"] == "0.5" and card["tta_shift"] == 1
    for key in ("test_accuracy", "test_accuracy_no_tta", "val_accuracy", "checkpoint_test_accuracy_no_tta",
                "onnx_fp32_test_accuracy_no_tta", "onnx_int8_test_accuracy_no_tta"):
        assert 0 <= card[key] <= 1, key
    # fp16 storage moves few answers; the fp32 ONNX export of the same weights moves none or almost none
    assert card["checkpoint_disagreements"] <= 5 and card["onnx_fp32_disagreements"] <= 2
    assert 0 <= card["calibration"]["ece"] <= 1 and set(card["per_class_test_accuracy"]) >= {"cat", "dog"}
    assert card["calibration_source"] == "fit here on the validation split" and card["temperature"] > 0
    assert (out / "reliability-uncalibrated.png").stat().st_size > 0
    assert len(card["ood"]) == 5 and 0 < card["ood"]["test_not_sure"] <= 0.25  # about 5% of the validation images
    for name, figures in card["ood"].items():
        if name != "test_not_sure":
            assert figures["images"] == 16 and all(0 <= figures[k] <= 1 for k in figures if k != "images"), name
