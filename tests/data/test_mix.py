import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ghostmixnet.data.mix import BatchMixer, cutmix_box


def distinct_images(n=8, size=32):
    """Image i is the constant i + 1 in every pixel, so the source of each pixel is readable."""
    return torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()


def test_mixed_targets_sum_to_one():
    mixer = BatchMixer(seed=0)
    targets = torch.arange(8) % 10
    for _ in range(50):
        batch = mixer(distinct_images(), targets)
        soft = batch.soft_targets(10)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))
        assert (soft >= 0).all()


def test_cutmix_lambda_equals_pasted_area():
    mixer = BatchMixer(mixup_share=0.0, seed=1)
    images, targets = distinct_images(), torch.arange(8)  # targets double as image indices
    checked = 0
    for _ in range(100):
        batch = mixer(images, targets)
        assert batch.kind == "cutmix"
        for i, partner in enumerate(batch.targets_b.tolist()):
            if partner == i:
                continue  # pasted from itself: nothing to see
            own = (batch.images[i] == i + 1).float().mean().item()
            pasted = (batch.images[i] == partner + 1).float().mean().item()
            assert own == pytest.approx(batch.lam, abs=1e-6)
            assert own + pasted == pytest.approx(1.0)
            checked += 1
    assert checked > 500


def test_cutmix_box_is_clipped_and_sized():
    rng = np.random.default_rng(0)
    for lam in np.linspace(0.01, 0.99, 30):
        y0, y1, x0, x1 = cutmix_box(lam, 32, 32, rng)
        assert 0 <= y0 <= y1 <= 32 and 0 <= x0 <= x1 <= 32
        side = int(32 * np.sqrt(1 - lam))
        assert y1 - y0 <= side and x1 - x0 <= side


def test_mixup_blends_with_partner():
    mixer = BatchMixer(mixup_share=1.0, seed=2)
    images = distinct_images()
    targets = torch.arange(8)
    batch = mixer(images, targets)
    assert batch.kind == "mixup"
    partner = images[batch.targets_b]  # targets are the image indices here
    torch.testing.assert_close(batch.images, batch.lam * images + (1 - batch.lam) * partner)


def test_mixup_cutmix_choice_is_fifty_fifty():
    mixer = BatchMixer(seed=3)
    kinds = [mixer(distinct_images(4, 8), torch.arange(4)).kind for _ in range(4000)]
    share = kinds.count("mixup") / len(kinds)
    assert kinds.count("none") == 0
    assert 0.46 < share < 0.54  # 5 standard deviations of a fair coin over 4000 draws


def test_mixup_lambda_follows_beta():
    mixer = BatchMixer(mixup_share=1.0, seed=4)
    lams = np.array([mixer(distinct_images(2, 4), torch.arange(2)).lam for _ in range(4000)])
    a = 0.2
    assert lams.mean() == pytest.approx(0.5, abs=0.03)
    assert lams.var() == pytest.approx(a * a / ((2 * a) ** 2 * (2 * a + 1)), rel=0.08)


def test_no_mixing_when_prob_zero():
    mixer = BatchMixer(prob=0.0)
    images = distinct_images()
    batch = mixer(images, torch.arange(8))
    assert batch.kind == "none" and batch.lam == 1.0 and batch.images is images


def test_loss_equals_cross_entropy_with_mixed_soft_targets():
    torch.manual_seed(0)
    mixer = BatchMixer(seed=5)
    logits = torch.randn(8, 10)
    batch = mixer(distinct_images(), torch.randint(0, 10, (8,)))
    eps = 0.1
    soft = batch.soft_targets(10) * (1 - eps) + eps / 10
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(batch.loss(logits, label_smoothing=eps), expected)


def test_the_seed_alone_replays_mixing():
    first = BatchMixer(seed=6)(distinct_images(), torch.arange(8))
    second = BatchMixer(seed=6)(distinct_images(), torch.arange(8))
    other = BatchMixer(seed=7)(distinct_images(), torch.arange(8))
    assert first.lam == second.lam and torch.equal(first.images, second.images)
    assert (first.lam, first.kind) != (other.lam, other.kind) or not torch.equal(first.images, other.images)
