"""Domain errors: each carries a message a user can act on; the CLI prints it as one line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LoyalError(Exception):
    """Base of every error Loyal reports to a user instead of a traceback."""

    exit_code = 2


class ConfigError(LoyalError):
    """The configuration file or an environment override is invalid."""


class DataContractError(LoyalError):
    """Input data breaks the data contract.

    The message names the table, the column, the rule broken and the first offending rows,
    so the person who owns the data can find and fix them.
    """

    def __init__(
        self,
        table: str,
        rule: str,
        column: str | None = None,
        rows: Sequence[Any] = (),
        detail: str = "",
    ) -> None:
        self.table = table
        self.column = column
        self.rule = rule
        self.rows = list(rows)
        self.detail = detail
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"table '{self.table}'"
        if self.column:
            where += f", column '{self.column}'"
        message = f"{where}: {self.rule}"
        if self.detail:
            message += f" ({self.detail})"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" and {len(self.rows) - 5} more" if len(self.rows) > 5 else ""
            message += f"; first offending rows: {shown}{more}"
        return message


class NotReadyError(LoyalError):
    """A step needs the output of an earlier step that has not run yet."""


class StepSkippedError(LoyalError):
    """A step cannot run on this business's data and is skipped; the message says why.

    Not a failure: the CLI prints it as one `skipped:` line and exits 0, and `loyal run` and
    `loyal pipeline retrain` carry on with the next step.
    """

    exit_code = 0
