"""torch.hub entry points: ``torch.hub.load("REPO_DIR", "ghostmixnet", source="local", pretrained=True)``.

``pretrained=True`` loads the CIFAR-10 weights shipped in ``src/ghostmixnet/weights`` (hash-checked);
the models take 32x32 RGB images normalised with ``ghostmixnet.data.MEAN`` and ``STD``.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "safetensors"]

# This checkout's package, whether or not (and whichever version) ghostmixnet is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from ghostmixnet.models import build_model  # noqa: E402


def ghostmixnet(pretrained: bool = False, num_classes: int = 10, dropout: float = 0.2):
    """GhostMixNet, 3,041,466 parameters; ``pretrained`` loads the shipped CIFAR-10 weights (another
    ``num_classes`` keeps every layer but a new classifier)."""
    return build_model("ghostmixnet", num_classes=num_classes, dropout=dropout, pretrained=pretrained)


def resnet(pretrained: bool = False, num_classes: int = 10, dropout: float = 0.2):
    """The ablation baseline, 4,630,858 parameters (no shipped weights)."""
    return build_model("resnet", num_classes=num_classes, dropout=dropout, pretrained=pretrained)


def resnet_se(pretrained: bool = False, num_classes: int = 10, dropout: float = 0.2):
    """The ablation baseline with SE, 4,907,498 parameters (no shipped weights)."""
    return build_model("resnet-se", num_classes=num_classes, dropout=dropout, pretrained=pretrained)
