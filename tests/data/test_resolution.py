import pytest
import torch

from ghostmixnet.config import make_config
from ghostmixnet.data.resolution import ResolutionSchedule, resize_batch


def test_a_schedule_gives_each_step_its_size_by_the_share_of_the_run_done():
    sizes = ResolutionSchedule.parse("16:0.25, 24:0.5")
    assert sizes.stages == ((16, 0.25), (24, 0.5))
    assert [sizes.size_at(step, 8) for step in range(8)] == [16, 16, 24, 24, 32, 32, 32, 32]
    assert [sizes.size_at(step, 4) for step in range(4)] == [16, 24, 32, 32]  # a re-planned length moves the stages
    assert sizes.cost() == pytest.approx(0.25 * 0.25 + 0.25 * 0.5625 + 0.5)
    assert ResolutionSchedule.parse("").size_at(0, 10) == 32 and ResolutionSchedule.parse("").cost() == 1.0


@pytest.mark.parametrize("text, problem", [("16", "SIZE:SHARE"), ("a:0.5", "SIZE:SHARE"), ("40:0.5", "size must be"),
                                           ("16:1.5", "share of the steps"), ("24:0.5,16:0.25", "increasing order")])
def test_a_bad_schedule_is_refused_naming_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        ResolutionSchedule.parse(text)
    with pytest.raises(ValueError, match="resolutions"):
        make_config("fast", resolutions=text)


def test_resizing_shrinks_a_batch_by_averaging_and_leaves_full_size_alone():
    images = torch.rand(2, 3, 32, 32)
    assert resize_batch(images, 32) is images
    small = resize_batch(images, 16)
    assert small.shape == (2, 3, 16, 16)
    # Antialiased downscaling averages neighbourhoods: the mean stays, pixel noise shrinks (plain sampling keeps it).
    assert abs(float(small.mean() - images.mean())) < 0.01 and float(small.std()) < 0.6 * float(images.std())
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(resize_batch(flat, 24), torch.full((1, 3, 24, 24), 0.3))
