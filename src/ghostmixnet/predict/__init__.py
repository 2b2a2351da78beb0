"""Prediction: image files and folders, or the course's test pickle, classified into labels and a CSV."""

from .classify import predict_files, predict_inputs

__all__ = ["predict_files", "predict_inputs"]
