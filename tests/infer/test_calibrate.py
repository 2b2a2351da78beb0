"""Temperature scaling and the "not sure" threshold: fit, stored, read back, refused when invalid."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostmixnet.errors import CheckpointError
from ghostmixnet.infer.calibrate import (
    UNCALIBRATED,
    Calibration,
    calibration_bins,
    calibration_of,
    fit_calibration,
    fit_temperature,
)


def sampled(temperature: float, n: int = 20000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and labels drawn from softmax(logits / temperature): that temperature is the true one."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, 10, generator=g)
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(true):
    logits, labels = sampled(true)
    fitted = fit_temperature(logits, labels)
    assert abs(fitted - true) / true < 0.05
    nll = [F.cross_entropy(logits / t, labels).item() for t in (fitted / 1.2, fitted, fitted * 1.2)]
    assert nll[1] < nll[0] and nll[1] < nll[2]


def test_fitting_lowers_the_calibration_error_of_an_underconfident_model():
    logits, labels = sampled(0.5)  # the plain softmax (T = 1) is underconfident here
    calibration = fit_calibration(logits, labels)
    before = calibration_bins(logits.softmax(1).numpy(), labels.numpy())["ece"]
    after = calibration_bins(calibration.probabilities(logits).numpy(), labels.numpy())["ece"]
    assert before > 0.05 and after < 0.015
    assert torch.equal(calibration.probabilities(logits).argmax(1), logits.argmax(1))  # no answer changes


def test_the_threshold_keeps_the_share_it_was_asked_to_keep():
    logits, labels = sampled(1.0, n=4000)
    for keep in (0.8, 0.95):
        calibration = fit_calibration(logits, labels, keep=keep)
        kept = float((~calibration.unsure(calibration.scores(logits))).float().mean())
        assert abs(kept - keep) < 0.002 and calibration.images == 4000 and calibration.fitted
    # Images far from the classes (all logits small and equal) score below it.
    assert calibration.unsure(calibration.scores(torch.zeros(3, 10))).all()


def test_uncalibrated_is_the_plain_softmax_and_never_unsure():
    logits = torch.randn(5, 10)
    torch.testing.assert_close(UNCALIBRATED.probabilities(logits), logits.softmax(1))
    assert not UNCALIBRATED.unsure(UNCALIBRATED.scores(logits)).any() and not UNCALIBRATED.fitted


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 20), st.lists(st.floats(-50, 50), min_size=2, max_size=10))
def test_energy_score_is_at_least_the_top_logit_and_temperature_keeps_the_order(t, row):
    logits = torch.tensor([row])
    c = Calibration(t)
    assert float(c.scores(logits)) >= max(row) - 1e-3
    probs = c.probabilities(logits)
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    # The top logit keeps the top probability (compared by value: logits 1e-30 apart tie in float32 probabilities).
    assert float(probs[0, int(logits.argmax())]) == float(probs.max())


@pytest.mark.parametrize("fields, message", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": 1e6}, "temperature"), ({"threshold": float("inf")}, "threshold"),
    ({"keep": 1.0}, "keep"), ({"keep": 0}, "keep"),
])
def test_impossible_calibrations_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Calibration(**fields)
    with pytest.raises(CheckpointError, match="its calibration is invalid"):
        Calibration.from_dict({**Calibration().to_dict(), **fields}, "m.pt")


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", {"temperature": 1.0, "exec": "rm -rf"}, {"temperature": "1"}])
def test_a_calibration_that_is_not_one_is_refused_naming_the_file(raw):
    with pytest.raises(CheckpointError, match="m.safetensors: its calibration is invalid"):
        Calibration.from_dict(raw, "m.safetensors")


def test_calibration_of_reads_checkpoints_weights_and_onnx_metadata():
    c = Calibration(0.8, 4.5, 0.95, 500, "validation split")
    assert calibration_of({"calibration": c.to_dict()}) == c  # a checkpoint's
    assert calibration_of({"metadata": {"calibration": json.dumps(c.to_dict())}}) == c  # a weights file's
    assert calibration_of({"epoch": "exported", "calibration": json.dumps(c.to_dict())}) == c  # an ONNX file's
    assert calibration_of({"epoch": 3}) is UNCALIBRATED
    assert calibration_of({"epoch": "exported", "calibration": None}) is UNCALIBRATED


def test_calibration_bins_measure_the_gap_between_confidence_and_accuracy():
    labels = np.zeros(1000, dtype=int)
    probs = np.full((1000, 2), 0.1)
    probs[:, 0] = 0.9  # 90% confident, right 90% of the time: calibrated
    labels[:100] = 1
    assert calibration_bins(probs, labels)["ece"] == pytest.approx(0.0, abs=1e-9)
    labels[:500] = 1  # right half the time at 90% confidence: 40 points overconfident
    assert calibration_bins(probs, labels)["ece"] == pytest.approx(0.4)


def test_fitting_needs_labels_for_every_logit():
    with pytest.raises(ValueError, match="as many labels"):
        fit_temperature(torch.randn(4, 10), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="keep"):
        fit_calibration(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), keep=1.5)
