"""Running a trained model: any model file loaded as a classifier, batched logits with test-time views, and
evaluation on a labelled set."""
