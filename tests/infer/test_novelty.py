"""Feature-space "not sure" scores on synthetic features whose answer is known, and their stored form."""

import numpy as np
import pytest
import torch

from ghostmixnet.errors import CheckpointError
from ghostmixnet.infer.novelty import GRID, FeatureScore, energy, fit_feature_score, max_softmax, pooled
from ghostmixnet.report.ood import auroc


def grid(x: torch.Tensor) -> torch.Tensor:
    """(N, C) features as the flattened (C, 2, 2) grid the scores read, every cell the same."""
    return x[:, :, None].expand(-1, -1, GRID).reshape(len(x), -1).contiguous()


def clusters(n: int = 400, dims: int = 16, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Three tight classes of features around orthogonal directions."""
    g = torch.Generator().manual_seed(seed)
    labels = np.arange(n) % 3
    centres = torch.eye(dims)[:3] * 5
    return grid(centres[labels] + 0.3 * torch.randn(n, dims, generator=g)), labels


def logits_of(features: torch.Tensor) -> torch.Tensor:
    return pooled(features)[:, :3]


def test_pooling_averages_each_channel_over_the_grid():
    x = torch.arange(8.0).view(1, 8)  # channel 0: 0..3, channel 1: 4..7
    assert torch.equal(pooled(x), torch.tensor([[1.5, 5.5]]))


def test_knn_scores_the_distance_to_the_kth_nearest_normalised_neighbour():
    bank = grid(torch.eye(4))
    score = FeatureScore("knn", {"bank": torch.eye(4)}, k=1, width=bank.shape[1])
    # A bank row itself is at distance 0; a direction orthogonal to all of them at sqrt(2); scale is ignored.
    on, off = grid(torch.tensor([[3.0, 0, 0, 0]])), grid(torch.tensor([[1.0, -1, 1, -1]]))
    assert float(score(on, logits_of(on))) == pytest.approx(0.0, abs=1e-6)
    assert float(score(off, logits_of(off))) == pytest.approx(-1.0, abs=1e-6)  # cos 0.5 at best: sqrt(2 - 1)
    second = FeatureScore("knn", {"bank": torch.eye(4)}, k=2, width=bank.shape[1])
    assert float(second(on, logits_of(on))) == pytest.approx(-2 ** 0.5, abs=1e-6)


def test_mahalanobis_is_the_squared_distance_in_units_of_the_shared_spread():
    g = torch.Generator().manual_seed(0)
    n, dims = 20000, 4
    labels = np.arange(n) % 2
    spread = torch.tensor([1.0, 2.0, 0.5, 1.0])
    means = torch.tensor([[0.0, 0, 0, 0], [10.0, 0, 0, 0]])
    x = means[labels] + spread * torch.randn(n, dims, generator=g)
    score = fit_feature_score("mahalanobis", grid(x), labels, torch.zeros(n, 2))
    probe = grid(torch.tensor([[0.0, 2.0, 0, 0], [0.0, 0, 0.5, 0], [10.0, 0, 0, 0]]))
    assert score(probe, torch.zeros(3, 2)).tolist() == pytest.approx([-1.0, -1.0, 0.0], abs=0.05)


def test_the_mahalanobis_precision_fits_half_precision_whatever_the_features_scale():
    g = torch.Generator().manual_seed(0)
    for size in (1e-4, 1.0, 1e4):
        x = size * torch.randn(300, 64, generator=g)  # fewer images than a covariance of 64 needs to be exact
        score = fit_feature_score("mahalanobis", grid(x), np.arange(300) % 3, torch.zeros(300, 3))
        back = FeatureScore.restore(score.settings(), score.arrays())  # refused were anything not finite
        assert torch.allclose(back(grid(x[:5]), torch.zeros(5, 3)), score(grid(x[:5]), torch.zeros(5, 3)), rtol=0.02)


def test_vim_is_the_energy_inside_the_principal_subspace_and_lower_off_it():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 4, generator=g)).Q  # training features span 4 of 32 dimensions
    train = torch.randn(500, 4, generator=g) @ basis.T + 0.01 * torch.randn(500, 32, generator=g)
    score = fit_feature_score("vim", train, np.arange(500) % 3, torch.randn(500, 3, generator=g), components=4)
    origin, fitted = score.tensors["origin"], score.tensors["basis"]
    assert torch.linalg.matrix_rank(torch.cat([fitted, basis], 1), atol=0.05) == 4  # it found the subspace
    probe_logits = torch.randn(5, 3, generator=g)
    inside = origin + torch.randn(5, 4, generator=g) @ fitted.T
    assert torch.allclose(score(inside, probe_logits), energy(probe_logits), atol=1e-4)
    across = torch.randn(32, generator=g)
    across -= fitted @ (fitted.T @ across)
    off = origin + 3 * across / across.norm()
    assert float(score(off[None], probe_logits[:1])) == pytest.approx(
        float(energy(probe_logits[:1])) - 3 * score.alpha, abs=1e-3)


@pytest.mark.parametrize("kind", ["knn", "mahalanobis", "vim"])
def test_every_feature_score_separates_far_points_from_the_training_clusters(kind):
    train, labels = clusters()
    score = fit_feature_score(kind, train, labels, logits_of(train), k=5, components=3)
    inside, _ = clusters(seed=1)
    g = torch.Generator().manual_seed(2)
    outside = grid(torch.randn(400, 16, generator=g) * 3)
    separation = auroc(score(inside, logits_of(inside)).numpy(), score(outside, logits_of(outside)).numpy())
    assert separation > 0.95


def test_logit_scores():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    assert energy(logits).tolist() == pytest.approx([float(torch.logsumexp(logits[0], 0)), float(np.log(2))])
    assert max_softmax(logits).tolist() == pytest.approx([float(torch.sigmoid(torch.tensor(2.0))), 0.5])


@pytest.mark.parametrize("kind", ["knn", "mahalanobis", "vim"])
def test_a_score_round_trips_through_its_stored_form(kind):
    train, labels = clusters()
    score = fit_feature_score(kind, train, labels, logits_of(train), k=5, components=3)
    back = FeatureScore.restore(score.settings(), score.arrays())
    assert back.settings() == score.settings()
    assert all(torch.equal(back.tensors[n], score.arrays()[n].float()) for n in score.tensors)
    assert back.size_bytes() == sum(t.numel() * 2 for t in score.tensors.values())


@pytest.mark.parametrize("damage, message", [
    (lambda s, a: (s, {"bank": a["bank"][:, :3]}), "shape"),
    (lambda s, a: (s, {"bank": a["bank"].clone().fill_(float("nan"))}), "not finite"),
    (lambda s, a: (s, {"bank": a["bank"], "extra": a["bank"]}), "holds arrays"),
    (lambda s, a: ({**s, "kind": "magic"}, a), "kind must be"),
    (lambda s, a: ({**s, "k": 10 ** 6}, a), "k must be"),
    (lambda s, a: ({**s, "width": 12}, a), "shape"),
    (lambda s, a: ({**s, "colour": 1}, a), "settings"),
    (lambda s, a: (s, {"bank": a["bank"].long()}), "floating-point"),
    (lambda s, a: ("knn", a), "not maps"),
])
def test_a_corrupt_or_misshapen_score_is_refused_in_one_line(damage, message):
    train, labels = clusters()
    score = fit_feature_score("knn", train, labels, logits_of(train), k=5)
    settings, arrays = damage(score.settings(), score.arrays())
    with pytest.raises(CheckpointError, match=message) as e:
        FeatureScore.restore(settings, arrays, "model.pt")
    assert str(e.value).startswith("model.pt:") and "calibrate --score" in str(e.value) and "\n" not in str(e.value)


def test_features_of_the_wrong_width_are_refused():
    train, labels = clusters()
    score = fit_feature_score("knn", train, labels, logits_of(train))
    with pytest.raises(ValueError, match="width 64"):
        score(torch.zeros(2, 12), torch.zeros(2, 3))


def test_fitting_refuses_mismatched_inputs_and_unknown_kinds():
    train, labels = clusters()
    with pytest.raises(ValueError, match="as many"):
        fit_feature_score("knn", train, labels[:-1], logits_of(train))
    with pytest.raises(ValueError, match="unknown feature score"):
        fit_feature_score("odin", train, labels, logits_of(train))
