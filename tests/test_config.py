import dataclasses

import pytest

from ghostmixnet.config import RECIPES, REFERENCE_COMPUTE, TrainConfig, field_docs, make_config


def test_paper_defaults_are_the_spec():
    cfg = make_config("paper")
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay) == (1e-3, 0.9, 0.999, 1e-3)
    assert (cfg.restart_epochs, cfg.restart_mult, cfg.min_lr) == (50, 1, 1e-4)
    assert (cfg.batch_size, cfg.epochs, cfg.dropout, cfg.label_smoothing) == (128, 200, 0.2, 0.1)
    assert (cfg.mix_prob, cfg.mixup_share, cfg.mixup_alpha, cfg.cutmix_alpha) == (1.0, 0.5, 0.2, 1.0)
    assert cfg.augment == "paper"


def test_the_fast_compute_path_is_the_default_and_the_reference_one_a_set_of_flags():
    cfg = make_config("paper")
    assert (cfg.precision, cfg.augment_backend, cfg.compile, cfg.num_workers) == ("auto", "batched", True, 0)
    reference = make_config("paper", **REFERENCE_COMPUTE)
    assert (reference.precision, reference.augment_backend, reference.compile, reference.num_workers) == (
        "fp32", "torchvision", False, 2)
    # The two differ in how they compute, never in what they learn.
    learns = {f.name for f in dataclasses.fields(TrainConfig)} - set(REFERENCE_COMPUTE)
    assert all(getattr(cfg, name) == getattr(reference, name) for name in learns)
    # Unset, the worker count follows the backend; set, it is kept (and saved resolved).
    assert make_config("paper", augment_backend="torchvision").num_workers == 2
    assert make_config("paper", augment_backend="torchvision", num_workers=0).num_workers == 0
    assert TrainConfig.from_dict(cfg.to_dict()).num_workers == 0


def test_presets_differ_only_where_the_paper_rows_do():
    paper, nomix, basic = (make_config(r) for r in ("paper", "paper-nomix", "basic"))
    assert nomix.mix_prob == 0 and nomix.augment == "paper"
    assert basic.mix_prob == 0 and basic.augment == "basic"
    assert dataclasses.replace(nomix, mix_prob=1.0, recipe="paper") == paper
    assert set(RECIPES) == {"paper", "paper-nomix", "basic", "fast", "finetune", "robust"}


def test_fast_recipe_changes_the_schedule_not_the_model():
    fast, paper = make_config("fast"), make_config("paper")
    assert (fast.model, fast.width, fast.dropout) == (paper.model, paper.width, paper.dropout)
    assert fast.schedule == "onecycle" and 0 < fast.warmup < 1 and fast.ema_decay > 0 and fast.tta
    assert fast.mix_prob == 0 and fast.augment == "basic"
    # The paper's recipe keeps the paper's schedule, no average, no test-time augmentation.
    assert (paper.schedule, paper.ema_decay, paper.tta, paper.val_every) == ("restarts", 0.0, False, 1)


def test_overrides_and_frozen():
    cfg = make_config("paper", epochs=3, lr=None)
    assert cfg.epochs == 3 and cfg.lr == 1e-3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 4


@pytest.mark.parametrize("overrides, message", [
    ({"model": "vgg"}, "model 'vgg' is unknown"),
    ({"epochs": 0}, "epochs must be positive"),
    ({"dropout": 1.0}, "dropout"),
    ({"precision": "fp8"}, "precision 'fp8'"),
    ({"min_lr": 1.0}, "min_lr"),
    ({"val_size": -1}, "val_size"),
    ({"mix_prob": 1.5}, "mix_prob"),
    ({"schedule": "step"}, "schedule 'step'"),
    ({"warmup": 1.0}, "warmup"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"val_every": 0}, "val_every"),
    ({"image_size": 50}, "image_size must be a multiple of 8 from 16 to 512"),
    ({"image_size": 8}, "image_size must be a multiple of 8 from 16 to 512"),
    ({"image_size": 64}, "cifar10's images are 32x32; image_size 64 is for folder data"),
    ({"image_size": 64, "dataset": "folder", "resolutions": "16:0.5"}, "drop --resolutions with --image-size"),
    ({"freeze_epochs": -1}, "freeze_epochs must not be negative"),
    ({"freeze_epochs": 2}, "freeze_epochs holds pretrained layers .* give --init"),
])
def test_invalid_values_are_rejected_on_creation(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("paper", **overrides)


def test_unknown_recipe_and_field():
    with pytest.raises(ValueError, match="unknown recipe"):
        make_config("fast-ish")
    with pytest.raises(ValueError, match="unknown config fields"):
        make_config("paper", learning_rate=1)


def test_round_trip(tmp_path):
    cfg = make_config("basic", seed=7, train_subset=100)
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({**cfg.to_dict(), "extra": 1})


def test_every_field_is_documented():
    docs = field_docs()
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(len(d) > 10 for d in docs.values())


def test_the_recipe_and_the_compute_settings_split_the_fields():
    from ghostmixnet.config import COMPUTE_FIELDS, RECIPE_FIELDS, ComputeConfig, RecipeConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RECIPE_FIELDS) | set(COMPUTE_FIELDS) == names and not set(RECIPE_FIELDS) & set(COMPUTE_FIELDS)
    assert set(REFERENCE_COMPUTE) <= set(COMPUTE_FIELDS)  # the switches back to the reference path change no recipe
    cfg = make_config("fast", width=0.5, precision="bf16")
    assert TrainConfig.of(cfg.recipe_config(), cfg.compute_config()) == cfg
    with pytest.raises(ValueError, match="precision 'fp8' is unknown"):
        ComputeConfig(precision="fp8")
    with pytest.raises(ValueError, match="lr must be positive"):
        RecipeConfig(lr=0.0)


def test_only_a_cifar_run_without_a_validation_split_selects_on_the_test_set():
    assert make_config("paper", val_size=0).selects_on_test and not make_config("paper").selects_on_test
    assert not make_config("paper", val_size=0, dataset="folder").selects_on_test  # a folder always holds one out
