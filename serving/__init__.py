"""Serving: the BentoML service answering next best actions from champions and online features."""
