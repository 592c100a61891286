"""Inference apart from training: one champion source for the service and batch scoring."""
