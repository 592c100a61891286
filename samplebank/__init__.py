"""The sample bank: a synthetic bank generator, its writer and its hidden ground truth."""
