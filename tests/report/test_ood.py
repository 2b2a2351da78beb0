"""Out-of-distribution figures: AUROC and the false-positive rate at 95% recall, and the generated sets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostmixnet.report.ood import auroc, fpr_at_recall, synthetic_ood_sets


def pairwise_auroc(inside, outside) -> float:
    wins = sum((a > b) + 0.5 * (a == b) for a in inside for b in outside)
    return wins / (len(inside) * len(outside))


def test_auroc_of_separated_equal_and_reversed_scores():
    assert auroc(np.arange(10, 20), np.arange(10)) == 1.0
    assert auroc(np.arange(10), np.arange(10, 20)) == 0.0
    assert auroc(np.ones(5), np.ones(7)) == 0.5


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=20), st.lists(st.integers(0, 5), min_size=1, max_size=20))
def test_auroc_equals_the_share_of_pairs_ranked_right_ties_counting_half(inside, outside):
    assert auroc(np.array(inside), np.array(outside)) == pytest.approx(pairwise_auroc(inside, outside))


def test_fpr_at_recall_counts_the_outside_images_above_the_threshold_that_keeps_95_percent():
    inside = np.arange(100, dtype=float)  # the threshold that keeps 95% of them lies at 4.95
    assert fpr_at_recall(inside, np.array([0.0, 4.0, 5.0, 50.0])) == 0.5
    assert fpr_at_recall(inside, np.array([-1.0])) == 0.0


def test_synthetic_sets_are_uint8_images_made_the_same_way_every_time():
    images = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    sets = synthetic_ood_sets(images, 8, seed=3)
    again = synthetic_ood_sets(images, 8, seed=3)
    assert len(sets) == 4
    for name, made in sets.items():
        assert made.shape == (8, 32, 32, 3) and made.dtype == np.uint8
        assert np.array_equal(made, again[name])
    # Shuffling moves pixels and patches but keeps each image's colours.
    for name in ("pixel-shuffled test images", "patch-shuffled test images"):
        made = sets[name].reshape(8, -1, 3)
        assert any(np.array_equal(np.sort(made[0], axis=0), np.sort(img.reshape(-1, 3), axis=0)) for img in images)
