"""Errors of the command line; the CLI prints their message and exits."""


class CommandError(Exception):
    """A command could not do what was asked; the message says why (exit 1)."""


class UsageError(CommandError):
    """An argument is not valid; the message names it and says why (exit 2)."""
