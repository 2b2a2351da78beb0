"""Reports people read about a trained model: its evaluation (accuracy, per class, confusion matrix) and its
calibration."""
