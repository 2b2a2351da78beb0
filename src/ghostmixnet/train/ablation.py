"""The paper's ablation table: four model/recipe rows trained on the same budget, side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, make_config
from ..files import write_text_atomic
from ..model.architectures import build_architecture, count_parameters
from .resume import LAST
from .run import train


@dataclass(frozen=True)
class Row:
    name: str
    """Run folder name."""
    label: str
    """The paper's row label."""
    model: str
    recipe: str
    paper_params: str
    paper_val: float
    """The paper's 'Val Acc.': measured on the 10,000 CIFAR-10 test images, best epoch picked on them."""
    paper_test: float
    """The paper's 'Test Acc.': a separate, unlabeled course test set scored elsewhere."""


ROWS = (
    Row("resnet-basic", "ResNet", "resnet", "basic", "4.6M", 91.4, 78.3),
    Row("resnet-se-nomix", "ResNet + SE + image transforms", "resnet-se", "paper-nomix", "4.9M", 94.3, 83.5),
    Row("ghostmixnet-nomix", "GhostNet + SE + image transforms", "ghostmixnet", "paper-nomix", "3.0M", 95.1, 84.0),
    Row("ghostmixnet-paper", "GhostNet + SE + image transforms + CutMix/Mixup", "ghostmixnet", "paper", "3.0M",
        95.5, 85.4),
)


def run_ablation(data_dir: Path, out_dir: Path, overrides: dict[str, Any], device: str = "auto",
                 echo: Callable[[str], None] | None = None) -> str:
    """Train every row (resuming unfinished ones, skipping finished ones) and write ``ablation.md``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for row in ROWS:
        run_dir = out_dir / row.name
        if not (run_dir / "test.json").is_file():
            (echo or print)(f"== {row.label}: {row.model}, recipe {row.recipe} -> {run_dir}")
            cfg = make_config(row.recipe, model=row.model, **overrides)
            train(cfg, data_dir, run_dir, device=device, resume=(run_dir / LAST).is_file(), echo=echo)
        results[row.name] = json.loads((run_dir / "test.json").read_text())
        results[row.name]["config"] = json.loads((run_dir / "config.json").read_text())
    table = ablation_markdown(results)
    write_text_atomic(out_dir / "ablation.md", table)
    return table


def ablation_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The table: ours (validation split and test set) beside the paper's figures (on CIFAR-10; on other data
    the paper has none)."""
    first = next(iter(results.values()))["config"]
    dataset = first.get("dataset", "cifar10")
    paper = dataset == "cifar10"
    budget = (f"{first['epochs']} epochs, batch {first['batch_size']}, seed {first['seed']}, {first['precision']}, "
              f"{'all' if first['train_subset'] is None else first['train_subset']} training images, "
              + (f"validation split of {first['val_size']}" if dataset != "folder"
                 else f"{100 * first['holdout']:g}% of each class held out"))
    test_name = "CIFAR-10 test" if paper else f"{dataset} test"
    lines = [f"| Model | Recipe | Parameters | Val acc. (ours) | Test acc. (ours, {test_name}) "
             + ("| Paper: val (= CIFAR-10 test) | Paper: test (course set) |" if paper else "|"),
             "|---|---|---:|---:|---:|" + ("---:|---:|" if paper else "")]
    for row in ROWS:
        r = results[row.name]
        c = r["config"]
        params = count_parameters(build_architecture(c["model"], c["num_classes"], c["width"], c["dropout"]))
        val = ("n/a (selected on test)" if TrainConfig.from_dict(c).selects_on_test
               else f"{100 * r['best_val_acc']:.2f}%")
        lines.append(f"| {row.label} | {row.recipe} | {params:,} | {val} | {100 * r['accuracy']:.2f}% |"
                     + (f" {row.paper_val}% | {row.paper_test}% |" if paper else ""))
    lines += ["", f"Budget for every row: {budget}; one seed. Checkpoints selected on the validation split; the test "
              f"column is the best checkpoint evaluated once on the {test_name} set."]
    if paper:
        lines[-1] = lines[-1].replace("the CIFAR-10 test set.", "the 10,000 CIFAR-10 test images.")
        lines.append("The paper's 'val' column is the CIFAR-10 test set with the best of 200 epochs picked on it; its "
                     "'test' column is a separate, unlabeled course test set, not comparable with ours.")
    return "\n".join(lines) + "\n"
