"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""

from __future__ import annotations


class ForgetFilterError(Exception):
    """Base class for problems the user can fix: bad config, bad input, missing prerequisite."""

    exit_code = 2


class ConfigError(ForgetFilterError):
    """The configuration is invalid (unknown key, wrong type, missing required value)."""


class InputError(ForgetFilterError):
    """An input file cannot be used as a whole. Names the file and, where known, row and column."""

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None) -> None:
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.file, self.row, self.column = file, row, column


class StageError(ForgetFilterError):
    """A stage cannot run or its result breaks an invariant (e.g. rows lost)."""

    exit_code = 3
