"""Errors that the CLI reports as one clear line instead of a traceback."""

from __future__ import annotations


class ActionlmError(Exception):
    """A user-facing problem (bad input, bad config): the CLI prints it and exits 2."""


class InputError(ActionlmError):
    """One input (a file, or one sample inside a file) cannot be used; ``source`` names it."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
