import math

import pytest

from ghostmixnet.train.budget import MARGIN, budget_config, epochs_for_budget


@pytest.mark.parametrize("minutes, rate, compile_s, images", [(60, 150.0, 30.0, 45000), (10, 1200.0, 5.0, 45000),
                                                             (150, 133.3, 80.0, 45000), (3, 900.0, 20.0, 5000)])
def test_the_planned_epochs_fit_the_budget_and_one_more_would_not(minutes, rate, compile_s, images):
    epochs = epochs_for_budget(minutes, rate, compile_s, images)

    def seconds(e: int) -> float:  # two compilations, then the steps
        return 2 * compile_s + e * images / rate

    assert seconds(epochs) <= MARGIN * 60 * minutes + 2 * compile_s
    assert seconds(epochs + 1) > MARGIN * (60 * minutes - 2 * compile_s) + 2 * compile_s
    assert epochs == math.floor(MARGIN * (60 * minutes - 2 * compile_s) * rate / images)


def test_a_budget_below_one_epoch_still_trains_one_and_bad_input_is_refused():
    assert epochs_for_budget(1, 10.0, 0.0, 45000) == 1
    with pytest.raises(ValueError, match="positive"):
        epochs_for_budget(0, 100.0, 0.0, 45000)


def test_budget_config_times_the_configs_own_step(cifar_dir, tiny_config):
    cfg = tiny_config(recipe="fast", batch_size=8, val_size=20)
    sized, plan = budget_config(cfg, cifar_dir, minutes=0.5, device="cpu", steps=3)
    assert plan.train_images == 200 - 20 and plan.images_per_s > 0
    assert sized.epochs == plan.epochs == epochs_for_budget(0.5, plan.images_per_s, plan.compile_seconds, 180)
    assert {**sized.to_dict(), "epochs": cfg.epochs} == cfg.to_dict()  # only the epochs change


def test_a_budget_on_a_folder_times_a_model_of_its_classes_on_its_training_split(class_folder, tiny_config):
    cfg = tiny_config(recipe="fast", batch_size=8, dataset="folder", holdout=0.2)
    sized, plan = budget_config(cfg, class_folder, minutes=0.5, device="cpu", steps=2)
    assert plan.train_images == 36 and plan.images_per_s > 0  # 60 photos less 20% for validation and 20% for test
    assert {**sized.to_dict(), "epochs": cfg.epochs} == cfg.to_dict()  # the classes join the config in the run
