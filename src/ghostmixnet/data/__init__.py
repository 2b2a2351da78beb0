"""Data: CIFAR-10 and the course's pickles read safely, images read like CIFAR's, splits, training batches,
the augmentation recipe and its two backends, and batch mixing."""

from .cifar import CLASSES, MEAN, STD, ArraySet, load_cifar10

__all__ = ["CLASSES", "MEAN", "STD", "ArraySet", "load_cifar10"]
