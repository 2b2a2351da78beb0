import pytest
import torch
import torch.nn.functional as F

from ghostmixnet.config import make_config
from ghostmixnet.data.augment import BatchPipeline, select_params
from ghostmixnet.data.batch_ops import normalize
from ghostmixnet.data.sources import load_data
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.model.checkpoint import load_checkpoint
from ghostmixnet.train.distill import distillation_loss, view_params
from ghostmixnet.train.run import train


def quiet(_line):
    pass


def test_loss_is_cross_entropy_at_alpha_0_and_zero_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    logits, teacher, targets = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    ce = F.cross_entropy(logits, targets, label_smoothing=0.1)
    assert torch.allclose(distillation_loss(logits, targets, teacher, 0.0, 4.0, 0.1), ce)
    assert distillation_loss(teacher, targets, teacher, 1.0, 4.0).abs() < 1e-6
    # Closer to the teacher is a lower loss.
    assert distillation_loss(0.5 * (logits + teacher), targets, teacher, 1.0, 4.0) < distillation_loss(
        logits, targets, teacher, 1.0, 4.0)


def test_views_depend_on_the_split_seed_and_view_not_on_the_run():
    pipeline = BatchPipeline("basic")
    first, again = view_params(pipeline, 50, 3, split_seed=0), view_params(pipeline, 50, 3, split_seed=0)
    for a, b in zip(first, again):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(first[0]["top"], first[1]["top"])
    assert not torch.equal(first[0]["top"], view_params(pipeline, 50, 1, split_seed=1)[0]["top"])


def test_select_params_picks_the_rows_of_nested_parameters():
    params = BatchPipeline("paper").sample(8, torch.Generator().manual_seed(0))
    rows = torch.tensor([5, 1])
    picked = select_params(params, rows)
    assert torch.equal(picked["top"], params["top"][rows])
    assert all(torch.equal(v, params["autoaugment"][k][rows]) for k, v in picked["autoaugment"].items())


@pytest.mark.parametrize("overrides, message", [
    ({"distill": "pretrained"}, "set --mix-prob 0 with --distill"),
    ({"distill": "pretrained", "mix_prob": 0.0, "resolutions": "16:0.5"}, "drop --resolutions"),
    ({"distill": "pretrained", "mix_prob": 0.0, "augment_backend": "torchvision"}, "--augment-backend batched"),
    ({"distill_views": 0}, "distill_views must be at least 1"),
    ({"distill_alpha": 1.5}, "distill_alpha must be in"),
    ({"distill_temperature": 0.0}, "distill_temperature must be positive"),
])
def test_config_refuses_what_distillation_cannot_do(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("paper", **overrides)


@pytest.fixture(scope="module")
def teacher_run(cifar_dir, tmp_path_factory):
    """A tiny trained run to distil from."""
    from ghostmixnet.config import make_config as make

    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = make("fast", width=0.125, epochs=1, batch_size=32, val_size=50, num_workers=0, compile=False)
    train(cfg, cifar_dir, out, echo=quiet)
    return out


def test_a_distilled_run_caches_the_teachers_scores_of_each_view_once(cifar_dir, tmp_path, tiny_config,
                                                                       teacher_run, monkeypatch):
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(recipe="fast", model="ghostmixnet-ic01", distill=str(teacher_run / "best.pt"),
                      distill_views=2, epochs=2)
    lines = []
    train(cfg, cifar_dir, tmp_path / "a", echo=lines.append)
    assert sum("teacher scored view" in line for line in lines) == 2
    cached = list((tmp_path / "cache" / "teacher").glob("*.safetensors"))
    assert len(cached) == 1
    # The cache holds the teacher's logits of exactly those views.
    from safetensors.torch import load_file

    logits = load_file(str(cached[0]))["logits"].float()
    splits = load_data("cifar10", cifar_dir, **cfg.data_fields())
    images = torch.from_numpy(splits.train.images).permute(0, 3, 1, 2).contiguous()
    assert logits.shape == (2, len(images), 10)
    teacher, teacher_cfg, _ = model_from_checkpoint(teacher_run / "best.pt")
    pipeline, rows = BatchPipeline("basic"), torch.tensor([0, 7, 31])
    view = view_params(pipeline, len(images), 2, cfg.split_seed)[1]
    with torch.no_grad():
        expected = teacher(normalize(pipeline.apply(images[rows], select_params(view, rows)),
                                     *teacher_cfg.normalization))
    torch.testing.assert_close(logits[1, rows], expected, atol=0.02, rtol=0.01)
    # A second run (another seed) reads the cache instead of running the teacher again.
    lines.clear()
    train(tiny_config(recipe="fast", model="ghostmixnet-ic01", distill=str(teacher_run / "best.pt"),
                      distill_views=2, epochs=1, seed=1), cifar_dir, tmp_path / "b", echo=lines.append)
    assert not any("teacher scored view" in line for line in lines)
    assert any("read from" in line for line in lines)
    assert load_checkpoint(tmp_path / "b" / "best.pt")["config"]["distill"] == str(teacher_run / "best.pt")


def test_a_teacher_of_other_classes_is_refused(cifar_dir, tmp_path, tiny_config, teacher_run, monkeypatch):
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(recipe="fast", model="ghostmixnet-ic01", distill=str(teacher_run / "best.pt"), num_classes=5)
    with pytest.raises(ValueError, match="distil from a model of the same classes"):
        train(cfg, cifar_dir, tmp_path / "run", echo=quiet)


def test_a_distilled_run_resumes_exactly(cifar_dir, tmp_path, tiny_config, teacher_run, monkeypatch):
    monkeypatch.setenv("GHOSTMIXNET_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(recipe="fast", model="ghostmixnet-ic01", distill=str(teacher_run / "best.pt"),
                      distill_views=2, epochs=2)
    train(cfg, cifar_dir, tmp_path / "straight", echo=quiet)
    train(cfg, cifar_dir, tmp_path / "halves", echo=quiet, stop_after=1)
    train(cfg, cifar_dir, tmp_path / "halves", echo=quiet, resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    halves = load_checkpoint(tmp_path / "halves" / "last.pt")["model"]
    assert all(torch.equal(straight[k], halves[k]) for k in straight)
