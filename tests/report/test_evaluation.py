"""An evaluation report stays readable and bounded for many classes, and is as it was for CIFAR-10's ten."""

import numpy as np

from ghostmixnet.data.cifar import CLASSES
from ghostmixnet.infer.evaluate import EvalResult
from ghostmixnet.report.evaluation import confusion_text, per_class_text, plot_confusion, top_confusions


def test_a_report_of_many_classes_stays_bounded_and_names_the_largest_confusions(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"class{i}" for i in range(1000)]
    confusion = np.diag(rng.integers(5, 10, 1000))
    confusion[3, 7], confusion[8, 2] = 40, 30  # the two largest mistakes
    assert top_confusions(confusion, names, k=2) == [("class3", "class7", 40), ("class8", "class2", 30)]
    text = confusion_text(confusion, names)
    assert len(text.splitlines()) <= 16 and "class3 -> class7: 40" in text
    lines = per_class_text(np.diag(confusion) / confusion.sum(1), names)
    assert len(lines) == 12 and "lowest of 1000 classes" in lines[0]
    summary = EvalResult(0.0, 0.5, confusion).summary(names)
    assert summary["confusion"] is None and len(summary["per_class_accuracy"]) == 1000
    plot_confusion(confusion, names, tmp_path / "big.png", "1000 classes")
    assert (tmp_path / "big.png").stat().st_size < 500_000


def test_ten_classes_keep_the_whole_table():
    confusion = np.eye(10, dtype=np.int64) * 7
    assert len(confusion_text(confusion, CLASSES).splitlines()) == 11  # a header and a row per class
    assert len(per_class_text(np.ones(10), CLASSES)) == 10
    assert EvalResult(0.0, 1.0, confusion).summary(CLASSES)["confusion"] == confusion.tolist()
