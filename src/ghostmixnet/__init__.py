"""GhostMixNet: a compact CIFAR-10 ResNet of Ghost modules with SE, trained with AutoAugment, Mixup and CutMix."""

import importlib.util

from .model.architectures import count_parameters
from .model.factory import build_model, ghostmixnet, resnet, resnet_se
from .version import __version__

# timm stays optional: with it installed, the model is in its registry (timm.create_model("ghostmixnet_cifar10")).
if importlib.util.find_spec("timm") is not None:
    from .model import timm_registry  # noqa: F401  (registers on import)

__all__ = ["build_model", "count_parameters", "ghostmixnet", "resnet", "resnet_se", "__version__"]
