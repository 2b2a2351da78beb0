import math

import pytest

from ghostmixnet.data.resolution import ResolutionSchedule
from ghostmixnet.train.budget import MARGIN, budget_config, epochs_for_budget
from ghostmixnet.train.replan import REPLAN_MARGIN, Budget, Replanner


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
    sized, plan, budget = budget_config(cfg, cifar_dir, minutes=0.5, device="cpu", steps=3)
    assert plan.train_images == 200 - 20 and plan.images_per_s > 0
    assert plan.epochs == epochs_for_budget(0.5, plan.images_per_s, plan.compile_seconds, 180)
    # The one-cycle recipe is planned in steps (23 of 8 images an epoch), re-planned as the run goes.
    assert plan.steps == math.floor(REPLAN_MARGIN * (30 - 2 * plan.compile_seconds) * plan.images_per_s / 8)
    assert budget == Budget(30.0, plan.compile_seconds, plan.steps) and sized.epochs == -(-plan.steps // 23)
    assert {**sized.to_dict(), "epochs": cfg.epochs} == cfg.to_dict()  # only the epochs change
    paper, plan, budget = budget_config(tiny_config(batch_size=8, val_size=20), cifar_dir, 0.5, device="cpu", steps=3)
    assert budget is None and plan.steps == 0 and paper.epochs == plan.epochs  # restarts: whole epochs, a guard


def test_a_budget_on_a_folder_times_a_model_of_its_classes_on_its_training_split(class_folder, tiny_config):
    cfg = tiny_config(recipe="fast", batch_size=8, dataset="folder", holdout=0.2)
    sized, plan, _ = budget_config(cfg, class_folder, minutes=0.5, device="cpu", steps=2)
    assert plan.train_images == 36 and plan.images_per_s > 0  # 60 photos less 20% for validation and 20% for test
    assert {**sized.to_dict(), "epochs": cfg.epochs} == cfg.to_dict()  # the classes join the config in the run


def simulate(planner: Replanner, first_total: int, pace, compile_s: float,
             sizes: ResolutionSchedule) -> tuple[int, float]:
    """Train on a simulated clock as the run does: each step takes ``pace(step, size)`` seconds (plus ``compile_s``
    for the first step of each size), the planner re-plans as it goes; the steps done and the time they took."""
    total, done, clock, compiled = first_total, 0, 0.0, set()
    while done < total:
        size = sizes.size_at(done, total)
        clock += pace(done, size) + (compile_s if size not in compiled else 0.0)
        compiled.add(size)
        done += 1
        planner.record(done, clock, size)
        if planner.due(done, total):
            total = max(planner.plan(done, clock), done)
    return done, clock


@pytest.mark.parametrize("resolutions", ["", "16:0.3,24:0.6"])
@pytest.mark.parametrize("drift", [0.7, 1.0, 1.3])
def test_replanning_ends_inside_the_budget_and_uses_nearly_all_of_it(resolutions, drift):
    # The burst said 1.0 s a step at full size; the run then drifts to `drift` times that, with 10% noise and
    # slower epoch-end steps, and its first plan is 20% off. It must end within the budget, using at least 95%.
    import random

    rng, budget, compile_s = random.Random(0), 3600.0, 60.0
    sizes = ResolutionSchedule.parse(resolutions)

    def pace(step: int, size: int) -> float:
        slowing = 1.0 + (drift - 1.0) * min(1.0, step / 1000)
        return slowing * (size / 32) ** 2 * rng.uniform(0.9, 1.1) * (3.0 if step % 352 == 351 else 1.0)

    planner = Replanner(budget, sizes, compile_seconds=compile_s)
    done, seconds = simulate(planner, first_total=int(1.2 * budget / sizes.cost()), pace=pace, compile_s=compile_s,
                             sizes=sizes)
    assert 0.95 * budget <= seconds <= budget, (done, seconds)


def test_replanning_stops_at_once_when_the_time_is_spent_and_never_plans_below_the_steps_done():
    planner = Replanner(100.0)
    for done in range(1, 6):
        planner.record(done, 30.0 * done, 32)
    assert planner.plan(5, 150.0) == 5  # the budget is spent
    assert planner.plan(2, 60.0) == 2 + int(0.98 * 40 / 30)  # 30 s a step, 39.2 s left


def test_a_new_image_size_is_charged_its_compilation_and_estimated_by_its_pixels():
    planner = Replanner(1000.0, ResolutionSchedule.parse("16:0.5"), compile_seconds=50.0)
    for done in range(1, 6):
        planner.record(done, 4.0 * done, 32)  # the first step of a size is compilation: not timed
    assert planner.step_seconds(32) == 4.0 and planner.step_seconds(16) == 1.0
    # Steps 10..19 of a 20-step run are at full size (already compiled); 0..9 at 16 pixels, with one compilation.
    assert planner.seconds_for(10, 20) == 40.0
    assert planner.seconds_for(0, 20) == 10 * 1.0 + 50.0 + 40.0


def test_a_budgeted_run_re_plans_its_steps_ends_inside_the_budget_and_validates_its_final_weights(
        cifar_dir, tmp_path, tiny_config, monkeypatch):
    import json
    import types

    import ghostmixnet.train.loop as loop
    from ghostmixnet.model.checkpoint import load_checkpoint
    from ghostmixnet.train.run import train

    # The epoch loop reads a simulated clock that advances 0.05 s a read (two reads a step: 0.1 s a step), so the
    # pace is exact. 150 training images at batch 16: 10 steps an epoch. The first plan says 12 steps; 4 seconds
    # fit about 39, so the run stretches its schedule, then ends inside the budget with the schedule complete.
    clock = iter(0.05 * i for i in range(10**6))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    cfg = tiny_config(recipe="fast", batch_size=16, epochs=2, val_every=4)
    lines = []
    summary = train(cfg, cifar_dir, tmp_path / "run", echo=lines.append, budget=Budget(4.0, 0.0, 12))
    assert 0.95 * 4.0 <= summary["train_seconds"] <= 4.0 and not summary["time_limit_hit"] and "test_acc" in summary
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["budget"] == {"seconds": 4.0, "compile_seconds": 0.0, "steps": 12}
    planned = last["scheduler"]["lr_lambdas"][0]["total_steps"]
    steps = sum(row["steps"] for row in last["history"])
    assert [row["steps"] for row in last["history"]] == [10, 10, 10, 9]  # 39 steps of 0.1 s: 3.9 of the 4 s
    assert steps == planned == 39 and last["history"][-1]["val_acc"] is not None  # the final weights validated
    assert any(line.startswith(f"time budget: {steps} steps") for line in lines)
    assert json.loads((tmp_path / "run" / "test.json").read_text())["best_epoch"] >= 1


def test_a_budget_needs_the_one_cycle_schedule(cifar_dir, tmp_path, tiny_config):
    from ghostmixnet.errors import RunError
    from ghostmixnet.train.run import train

    with pytest.raises(RunError, match="one-cycle"):
        train(tiny_config(), cifar_dir, tmp_path / "run", echo=lambda _: None, budget=Budget(10.0))


def test_the_burst_is_timed_at_full_size_and_smaller_steps_are_costed_by_their_pixels(cifar_dir, tiny_config,
                                                                                     monkeypatch):
    import ghostmixnet.train.parts as parts

    resized = []
    monkeypatch.setattr(parts, "resize_batch", lambda images, size: resized.append(size) or images)
    cfg = tiny_config(recipe="fast", batch_size=8, val_size=20, resolutions="16:0.5")
    _, plan, _ = budget_config(cfg, cifar_dir, minutes=0.5, device="cpu", steps=3)
    assert resized == []  # every timed step at 32 pixels
    cost = 0.5 * 0.25 + 0.5  # half the steps at a quarter of the pixels
    assert plan.steps == math.floor(REPLAN_MARGIN * (30 - 2 * plan.compile_seconds) * plan.images_per_s / cost / 8)
