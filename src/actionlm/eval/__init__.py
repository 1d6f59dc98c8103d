"""Evaluation stage: predictions, metrics and confusion matrices of every method."""
