"""The run configuration: the config types (:mod:`.types`) and the named recipes built from them (:mod:`.recipes`).

``from ghostmixnet.config import X`` reaches everything either module defines.
"""

from .recipes import (
    PAPER_BEST_TEST_ACCURACY,
    PAPER_TEST_CURVE,
    RECIPE_NOTES,
    RECIPES,
    REFERENCE_COMPUTE,
    make_config,
)
from .types import (
    AUGMENT_BACKENDS,
    AUGMENTATIONS,
    CHOICES,
    COMPILE_MODES,
    COMPUTE_FIELDS,
    DATASETS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    RECIPE_FIELDS,
    SCHEDULES,
    ComputeConfig,
    RecipeConfig,
    TrainConfig,
    config_of,
    field_docs,
)

__all__ = [
    "AUGMENTATIONS", "AUGMENT_BACKENDS", "CHOICES", "COMPILE_MODES", "COMPUTE_FIELDS", "ComputeConfig", "DATASETS",
    "NORMALIZATIONS", "OPTIMIZERS", "PAPER_BEST_TEST_ACCURACY", "PAPER_TEST_CURVE", "PRECISIONS", "RECIPES",
    "RECIPE_FIELDS", "RECIPE_NOTES", "REFERENCE_COMPUTE", "RecipeConfig", "SCHEDULES", "TrainConfig", "config_of",
    "field_docs", "make_config",
]
