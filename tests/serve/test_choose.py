"""How a model is served: views, auto's pick, the queue from measured speed, the kept measurements."""

import numpy as np
import pytest
import torch

from ghostmixnet.infer.logits import predict_logits
from ghostmixnet.serve.choose import (
    TOLERANCE,
    Accuracy,
    Queue,
    Record,
    Speed,
    measure_accuracy,
    measure_speed,
    pick,
    queue_for,
    views_logits,
)


def speed(images_per_s: float, latency_ms: float = 4.0, per_image_ms: float = 2.0) -> Speed:
    return Speed(1, 2, latency_ms, per_image_ms, images_per_s)


def accuracy(single: float, reference: float = 0.93) -> Accuracy:
    return Accuracy(2000, "validation", single, reference, 0.99, single, 1)


def test_auto_takes_the_fastest_runtime_within_the_tolerance_and_says_why_not_the_others():
    lines = []
    candidates = {"torch": (speed(100), accuracy(0.93)), "onnxruntime": (speed(200), accuracy(0.93)),
                  "onnxruntime-int8": (speed(400), accuracy(0.93 - TOLERANCE - 0.001)),
                  "openvino-int8": (speed(500), None), "openvino": (speed(300), accuracy(0.93 - TOLERANCE / 2))}
    assert pick(candidates, lines.append) == "openvino"
    assert any("not onnxruntime-int8" in line and "points below" in line for line in lines)
    assert any("not openvino-int8" in line and "unmeasured" in line for line in lines)
    assert lines[-1].startswith("auto: openvino, the fastest admitted (300 images/s")
    # a measured int8 within the tolerance is taken; an fp32 runtime needs no measurement
    assert pick({"torch": (speed(100), None), "openvino-int8": (speed(500), accuracy(0.929))}, print) == "openvino-int8"
    assert pick({"torch": (speed(100), None), "onnxruntime": (speed(200), None)}, print) == "onnxruntime"
    with pytest.raises(RuntimeError, match="no runtime qualifies"):
        pick({"onnxruntime-int8": (speed(400), None)}, print)


def test_the_queue_follows_the_runtime_s_measured_latency():
    fast = queue_for(Speed(2, 1, latency_ms=4.0, per_image_ms=2.5, images_per_s=800))
    assert fast == Queue(2, 1, 40, 0.002)  # 100 ms of batch, half of one image's latency to wait
    slow = queue_for(Speed(1, 2, latency_ms=180.0, per_image_ms=60.0, images_per_s=17))
    assert (slow.max_batch, slow.window) == (1, 0.010)  # capped: never over 10 ms of waiting
    assert queue_for(Speed(1, 2, 0.1, 0.01, 1e5)).max_batch == 256


@pytest.mark.parametrize("views, shift", [(1, 0), (2, 0), (6, 2)])
def test_views_average_the_same_logits_as_evaluation_does(trained_like, views, shift):
    model = trained_like().eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    served = views_logits(model, images, views, shift, None)
    evaluated = predict_logits(model, images, torch.device("cpu"), tta=views > 1, tta_shift=shift if views == 6 else 0)
    torch.testing.assert_close(served, evaluated, rtol=1e-4, atol=1e-4)


def test_accuracy_counts_single_view_served_views_and_agreement(trained_like):
    model = trained_like().eval()
    images = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    truth = views_logits(model, images, 1, 2, None).argmax(1).numpy()
    labels = truth.copy()
    labels[:10] = (labels[:10] + 1) % 10  # 30 of 40 right
    reference = truth.copy()
    reference[:4] = (reference[:4] + 1) % 10  # the reference disagrees on 4
    a = measure_accuracy(model, reference, images, labels, "validation", 2, 2, None)
    assert (a.single_view, a.agreement, a.reference) == (0.75, 0.9, float((reference == labels).mean()))
    assert a.views == 2 and 0 <= a.served <= 1 and a.images == 40


def test_speed_keeps_the_faster_worker_layout():
    made = []

    def make(threads):
        made.append(threads)
        return lambda x: torch.zeros(len(x), 10)

    s = measure_speed(make, views=6, cores=2, repeats=1)
    assert made == [2, 1, 1]  # one worker of 2 threads, then 2 workers of 1 thread each
    assert (s.workers, s.threads) in ((1, 2), (2, 1)) and s.images_per_s > 0 and s.per_image_ms > 0
    assert measure_speed(make, views=1, cores=1, repeats=1).workers == 1


def test_kept_measurements_are_read_back_and_a_damaged_one_is_measured_again(tmp_path):
    record = Record(tmp_path)
    record.put("speed", speed(123.0), "onnxruntime", "file.onnx", "1")
    assert record.get("speed", Speed, "onnxruntime", "file.onnx", "1") == speed(123.0)
    assert record.get("speed", Speed, "onnxruntime", "file.onnx", "6") is None  # another key
    record.path("speed", "onnxruntime", "file.onnx", "1").write_text('{"workers": "x"')
    assert record.get("speed", Speed, "onnxruntime", "file.onnx", "1") is None
