"""GhostMixNet: a compact CIFAR-10 ResNet of Ghost modules with SE, trained with AutoAugment, Mixup and CutMix."""

import importlib.abc
import importlib.util
import sys

from .model.architectures import count_parameters
from .model.factory import build_model, ghostmixnet, resnet, resnet_se
from .version import __version__


def _register_with_timm() -> None:
    from .model import timm_registry  # noqa: F401  (registers on import)


class _RegisterAfter(importlib.abc.Loader):
    """timm's own loader, then the registration."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        _register_with_timm()


class _OnTimmImport(importlib.abc.MetaPathFinder):
    """Registers the model the moment timm is imported. Importing timm here instead (it loads torchvision and
    torch's compiler) would make every command of this package start about two seconds later."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfter(spec.loader)
        return spec


# timm stays optional: with it installed, the model is in its registry (timm.create_model("ghostmixnet_cifar10")),
# whether timm is imported before this package or after it.
if "timm" in sys.modules:
    _register_with_timm()
elif importlib.util.find_spec("timm") is not None:
    sys.meta_path.insert(0, _OnTimmImport())

__all__ = ["build_model", "count_parameters", "ghostmixnet", "resnet", "resnet_se", "__version__"]
