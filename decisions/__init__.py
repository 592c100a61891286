"""Decisions: the durable log of what the NBA policy decided, safe exploration, offline evaluation.

A neutral package (it imports only `loyal` and `models`): serving writes the log, training and the
pipelines read it, so neither has to import the other.
"""
