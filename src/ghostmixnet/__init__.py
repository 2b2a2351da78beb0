"""GhostMixNet: a compact CIFAR-10 ResNet of Ghost modules with SE, trained with AutoAugment, Mixup and CutMix."""

from .models import build_model, count_parameters, ghostmixnet, resnet, resnet_se

__version__ = "0.1.0"


def _register_with_timm() -> None:
    """Put the model in timm's registry when timm is installed (``timm.create_model("ghostmixnet_cifar10")``)."""
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        from . import timm_models  # noqa: F401  (registers on import)


_register_with_timm()
__all__ = ["build_model", "count_parameters", "ghostmixnet", "resnet", "resnet_se", "__version__"]
