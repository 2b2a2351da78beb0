"""The photo degradations of the robust recipe: each kind at its strength, drawn per image, reproducible, and
the same images whichever batches they are degraded with."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ghostmixnet.config import make_config
from ghostmixnet.data.augment import BatchPipeline, augment_in_chunks
from ghostmixnet.data.degrade import KINDS, degrade_batch, sample_degradations


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth gradients with a bright square: structure that blur and JPEG change and contrast can reduce."""
    ramp = torch.linspace(0, 200, 32)
    base = (ramp[None, :] + ramp[:, None]).div(2)[None, None].expand(n, 3, 32, 32).clone()
    base[:, :, 8:16, 8:16] = 250
    g = torch.Generator().manual_seed(seed)
    return (base + torch.randint(0, 30, (n, 3, 1, 1), generator=g)).clamp(0, 255).to(torch.uint8)


def params_for(kind: str, strength: float, n: int = 4) -> dict:
    p = sample_degradations(n, 1.0, torch.Generator().manual_seed(0))
    p["kind"] = torch.full((n,), KINDS.index(kind))
    p["strength"] = torch.full((n,), strength)
    return p


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_the_images_more_at_full_strength(kind):
    x = images(4)
    weak = (degrade_batch(x, params_for(kind, 0.1)).float() - x.float()).abs().mean()
    strong = (degrade_batch(x, params_for(kind, 1.0)).float() - x.float()).abs().mean()
    assert strong > weak and strong > 2


def test_jpeg_is_pils_codec_at_the_drawn_quality():
    x = images(1)
    out = degrade_batch(x, params_for("jpeg", 1.0, 1))  # quality 25
    buffer = io.BytesIO()
    Image.fromarray(x[0].permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=25)
    expected = np.asarray(Image.open(buffer).convert("RGB"))
    assert np.array_equal(out[0].permute(1, 2, 0).numpy(), expected)


def test_contrast_scales_the_distance_from_the_mean():
    x = images(1)
    out = degrade_batch(x, params_for("contrast", 1.0, 1)).float()  # factor 0.2
    mean = x.float().mean()
    assert torch.allclose(out, ((x.float() - mean) * 0.2 + mean).round(), atol=1)


def test_the_share_decides_how_many_images_are_degraded_and_none_leaves_them_alone():
    g = torch.Generator().manual_seed(0)
    assert float((sample_degradations(4000, 0.5, g)["kind"] >= 0).float().mean()) == pytest.approx(0.5, abs=0.03)
    none = sample_degradations(8, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(degrade_batch(images(), none), images())


def test_the_pipeline_degrades_reproducibly_and_whatever_the_chunk():
    pipeline = BatchPipeline("basic", degrade=1.0)
    batches = [(images(8, seed), torch.zeros(8)) for seed in range(3)]

    def run(chunk):
        return [x for x, _ in augment_in_chunks(batches, pipeline, chunk, lambda i: torch.Generator().manual_seed(i),
                                                (0.5,) * 3, (0.25,) * 3)]
    one, three = run(1), run(3)
    assert all(torch.equal(a, b) for a, b in zip(one, three))
    plain = [x for x, _ in augment_in_chunks(batches, BatchPipeline("basic"), 1,
                                             lambda i: torch.Generator().manual_seed(i), (0.5,) * 3, (0.25,) * 3)]
    assert not torch.equal(one[0], plain[0])


def test_the_pipeline_refuses_a_share_outside_0_to_1():
    with pytest.raises(ValueError, match="degrade"):
        BatchPipeline("basic", degrade=1.5)


def test_the_config_validates_degrade_and_the_robust_recipe_sets_it():
    assert make_config("robust").degrade == 0.5 and make_config("robust").init == "pretrained"
    for bad, message in (({"degrade": 2.0}, "degrade must be in"),
                         ({"degrade": 0.5, "augment_backend": "torchvision"}, "batched augmentation"),
                         ({"degrade": 0.5, "distill": "x.pt", "mix_prob": 0.0}, "undegraded")):
        with pytest.raises(ValueError, match=message):
            make_config("paper", **bad)
