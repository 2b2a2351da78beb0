"""GhostMixNet: a compact CIFAR-10 ResNet of Ghost modules with SE, trained with AutoAugment, Mixup and CutMix."""

from .models import build_model, count_parameters, ghostmixnet, resnet, resnet_se

__version__ = "0.1.0"
__all__ = ["build_model", "count_parameters", "ghostmixnet", "resnet", "resnet_se", "__version__"]
