"""`loyal report`: one offline HTML page for management (being built; see issue #8)."""

from __future__ import annotations

from loyal.errors import NotReadyError


def report_command() -> None:
    """Write the management report."""
    raise NotReadyError("`loyal report` is not built yet")
