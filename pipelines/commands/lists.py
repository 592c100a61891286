"""`loyal churn-list`: who marketing should call this week (being built; see issue #8)."""

from __future__ import annotations

from loyal.errors import NotReadyError


def churn_list_command() -> None:
    """Rank consenting customers by expected loss (churn probability x CLV)."""
    raise NotReadyError("`loyal churn-list` is not built yet")
