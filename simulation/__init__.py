"""The learning loop simulated on the sample bank against its hidden acceptance truth."""
