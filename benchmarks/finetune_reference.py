"""The baseline a fine-tuning recipe has to beat: the plain loop a user writes from torchvision's tutorial.

Shipped weights, a new classifier, AdamW at one learning rate for every layer, flips and padded crops,
cross-entropy, ``--epochs`` passes over ``train/``, validation after each. Images are read with
torchvision's ``ImageFolder`` (shorter side resized to ``--image-size``, centre crop), normalised with
CIFAR-10's constants (the shipped weights'), in fp32, eager. It prints the best validation accuracy (and
its epoch), the test accuracy of that epoch's weights when ``test/`` exists, and the wall time.

    python benchmarks/finetune_reference.py photos/fire-split --image-size 32 --epochs 30

``DATA`` holds ``train/`` and ``val/`` (and optionally ``test/``) folders of class sub-folders.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets
from torchvision import transforms as T

from ghostmixnet.data.cifar import MEAN, STD
from ghostmixnet.model.factory import build_model, load_pretrained


def loaders(data: Path, size: int, batch_size: int) -> dict[str, torch.utils.data.DataLoader]:
    """``train`` (flip and crop, shuffled), ``val`` and ``test`` (when present) at ``size`` pixels."""
    read = [T.Resize(size), T.CenterCrop(size)]
    finish = [T.ToTensor(), T.Normalize(MEAN, STD)]
    augment = [T.RandomHorizontalFlip(), T.RandomCrop(size, padding=size // 8)]
    out = {}
    for split in ("train", "val", "test"):
        if (data / split).is_dir():
            steps = read + (augment if split == "train" else []) + finish
            folder = datasets.ImageFolder(data / split, T.Compose(steps))
            out[split] = torch.utils.data.DataLoader(folder, batch_size, shuffle=split == "train")
    return out


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> float:
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    return correct / len(loader.dataset)


def reference_loop(data: Path, size: int = 32, epochs: int = 30, lr: float = 1e-3, batch_size: int = 32,
                   seed: int = 0) -> dict[str, float]:
    """Fine-tune the shipped weights on ``data`` the plain way; the best validation accuracy and its epoch, that
    epoch's test accuracy (when ``data/test`` exists) and the seconds taken."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    data = loaders(Path(data), size, batch_size)
    classes = data["train"].dataset.classes
    model = build_model("ghostmixnet", num_classes=len(classes), image_size=size)
    load_pretrained(model, classes=classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    best, best_epoch, best_state = -1.0, 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in data["train"]:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = accuracy(model, data["val"])
        print(f"epoch {epoch}: loss {loss.item():.3f} val {100 * val:.2f}%", flush=True)
        if val > best:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
    result = {"image_size": size, "epochs": epochs, "best_val": best, "best_epoch": best_epoch}
    if "test" in data:
        model.load_state_dict(best_state)
        result["test"] = accuracy(model, data["test"])
    result["seconds"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="folder with train/ and val/ (and test/) class folders")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = reference_loop(args.data, args.image_size, args.epochs, args.lr, args.batch_size, args.seed)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
