"""torch.hub entry points: ``torch.hub.load("REPO_DIR", "ghostmixnet", source="local", pretrained=True)``.

The entry points are the package's own (``ghostmixnet.model.factory``: the same names and arguments);
``pretrained=True`` loads the CIFAR-10 weights shipped in ``src/ghostmixnet/model/shipped`` (hash-checked).
The models take 32x32 RGB images normalised with ``ghostmixnet.data.MEAN`` and ``STD`` (``image_size=N``: N x N).
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch", "torchvision", "safetensors"]

# This checkout's package, whether or not (and whichever version) ghostmixnet is installed.
_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from ghostmixnet.model.factory import (  # noqa: E402, F401
    ghostmixnet,
    ghostmixnet_ic01,
    ghostmixnet_ic02,
    ghostmixnet_robust,
    resnet,
    resnet_se,
)
