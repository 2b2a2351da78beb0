"""Running a trained model: any model file loaded as a classifier, batched logits with test-time views, and
evaluation on a labelled set."""

from .evaluate import EvalResult, evaluate
from .load import load_classifier, model_from_checkpoint
from .logits import normalize_uint8, predict_logits

__all__ = ["EvalResult", "evaluate", "load_classifier", "model_from_checkpoint", "normalize_uint8", "predict_logits"]
