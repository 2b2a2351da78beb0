"""A model's int8 TFLite Micro file scored beside its float self on the test images, single view.

    python benchmarks/micro_accuracy.py RUN_OR_CKPT --data-dir ../shared/data [--images 10000] [--tflite FILE]

Exports the checkpoint with ``ghostmixnet export --format tflite`` (unless ``--tflite`` names a file already made
from it), then runs every test image through TFLite Micro's interpreter, one at a time as a device does, and through
the float model in PyTorch; prints one JSON line: both accuracies, their top-1 agreement, the file's bytes and its
arena. Needs the ``micro`` extra.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ghostmixnet.data.sources import load_data
from ghostmixnet.deploy.export import export_checkpoint
from ghostmixnet.deploy.micro import MicroClassifier, arena_bytes
from ghostmixnet.infer.load import model_from_checkpoint
from ghostmixnet.infer.logits import normalize_uint8
from ghostmixnet.model.checkpoint import resolve_checkpoint


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--tflite", type=Path, default=None, help="an int8 file already exported from CHECKPOINT")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = resolve_checkpoint(args.checkpoint)
    path = args.tflite or export_checkpoint(checkpoint, None, args.data_dir, verify_images=0, format="tflite")
    model, cfg, _ = model_from_checkpoint(checkpoint)
    test = load_data(cfg.dataset, args.data_dir, **cfg.data_fields()).test
    micro, started = MicroClassifier(path), time.perf_counter()
    right = {"float": 0, "int8": 0}
    agree, n = 0, min(args.images, len(test.images))
    for start in range(0, n, 500):
        images = test.images[start:min(start + 500, n)]
        x = normalize_uint8(images, torch.device("cpu"), normalization=cfg.normalization)
        labels = np.asarray(test.labels[start:start + len(x)])
        with torch.no_grad():
            a = model.eval()(x).argmax(1).numpy()
        b = micro(x).argmax(1).numpy()
        right["float"] += int((a == labels).sum())
        right["int8"] += int((b == labels).sum())
        agree += int((a == b).sum())
    result = {"checkpoint": str(checkpoint), "tflite": str(path), "images": n, "float_accuracy": right["float"] / n,
              "tflite_micro_int8_accuracy": right["int8"] / n, "top1_agreement": agree / n,
              "file_bytes": Path(path).stat().st_size, "arena_bytes": arena_bytes(path),
              "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
