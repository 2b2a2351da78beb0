import pytest
import torch
from conftest import INT8_AGREEMENT, top1_agreement

pytest.importorskip("onnxruntime")

from ghostmixnet.data.cifar import load_cifar10  # noqa: E402
from ghostmixnet.deploy.export import export_onnx  # noqa: E402
from ghostmixnet.deploy.quantize import float_nodes, quantize_onnx  # noqa: E402
from ghostmixnet.infer.logits import predict_logits  # noqa: E402
from ghostmixnet.infer.onnx import OnnxClassifier  # noqa: E402
from ghostmixnet.model.factory import build_model  # noqa: E402
from ghostmixnet.train.run import train  # noqa: E402


@pytest.fixture(scope="module")
def float_onnx(cifar_dir, tmp_path_factory):
    """A tiny model trained for six epochs on the synthetic set (so its predictions mean something), in ONNX."""
    from ghostmixnet.config import make_config
    from ghostmixnet.infer.load import model_from_checkpoint

    out = tmp_path_factory.mktemp("q")
    cfg = make_config("basic", width=0.25, epochs=6, batch_size=16, val_size=50, num_workers=0, lr=3e-3,
                      compile=False)
    train(cfg, cifar_dir, out / "run", echo=lambda _: None)
    model, cfg, _ = model_from_checkpoint(out / "run" / "best.pt")
    return export_onnx(model, cfg, out / "float.onnx")


def test_keep_float_selects_depthwise_and_se(tmp_path):
    from ghostmixnet.config import make_config

    path = export_onnx(build_model("ghostmixnet", width=0.125).eval(), make_config("paper", width=0.125),
                       tmp_path / "m.onnx")
    assert float_nodes(path, []) == []  # every BatchNorm folded: nothing has to stay float
    depthwise = float_nodes(path, ["depthwise"])
    # 12 blocks x 2 Ghost modules' cheap 3x3 convolutions, not the 12 folded affines (1x1, depthwise too)
    assert len(depthwise) == 24 and all("cheap" in n for n in depthwise)
    se = float_nodes(path, ["se"])
    assert len([n for n in se if n.endswith("Conv")]) == 24 and all("/se/" in n for n in se)
    with pytest.raises(ValueError, match="unknown --keep-float"):
        float_nodes(path, ["bn"])


@pytest.mark.parametrize("keep", [(), ("depthwise", "se")])
def test_int8_model_runs_and_agrees_with_float(float_onnx, cifar_dir, tmp_path, keep):
    test = load_cifar10(cifar_dir, train=False)
    train_images = load_cifar10(cifar_dir, train=True).images[:128]
    q_path = quantize_onnx(float_onnx, tmp_path / "int8.onnx", train_images, keep_float=keep)
    assert q_path.stat().st_size < float_onnx.stat().st_size
    fp, q = OnnxClassifier(float_onnx), OnnxClassifier(q_path)
    assert q.config() == fp.config()  # metadata carried over
    cpu = torch.device("cpu")
    pred_fp = predict_logits(fp, test.images, cpu).argmax(1)
    pred_q = predict_logits(q, test.images, cpu).argmax(1)
    labels = torch.as_tensor(test.labels)
    assert (pred_fp == labels).float().mean() > 0.5  # the float model learned the synthetic classes
    assert (pred_q == pred_fp).float().mean() >= 0.8


@pytest.mark.parametrize("count", [150, 128, 7])
def test_calibration_batches_are_equal_and_feed_every_image_once(count):
    import numpy as np

    from ghostmixnet.deploy.quantize import _calibration_reader

    images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    reader = _calibration_reader(images, "input")
    batches = list(iter(reader.get_next, None))
    assert len({b["input"].shape for b in batches}) == 1  # a short last batch breaks percentile calibration
    assert sum(len(b["input"]) for b in batches) == count and len(batches[0]["input"]) <= 64


def test_int8_onnx_follows_the_shipped_model_on_real_images(shipped_on_real_images, shipped_int8_onnx):
    s = shipped_on_real_images
    quantized = OnnxClassifier(shipped_int8_onnx)(s.test)
    agreement = top1_agreement(quantized, s.logits)
    print(f"ONNX Runtime int8 vs PyTorch: top-1 agreement {100 * agreement:.2f}% on {len(s.test)} test images")
    assert agreement >= INT8_AGREEMENT
