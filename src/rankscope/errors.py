"""User-facing errors: one clear line naming the place and the fix, never a traceback."""

from __future__ import annotations


class RankscopeError(Exception):
    """An error caused by user input (config, dataset, file, model id).

    The CLI prints ``str(error)`` on one line and exits with code 2.
    ``where`` names the place (config key, file:line, model id); ``fix`` says what to do.
    """

    def __init__(self, where: str, problem: str, fix: str | None = None):
        problem = " ".join(str(problem).split())  # one line, whatever the library said
        self.where = where
        self.problem = problem
        self.fix = fix
        message = f"{where}: {problem}"
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)


class ConfigError(RankscopeError):
    """Invalid configuration value or YAML."""


class DatasetError(RankscopeError):
    """A dataset that cannot be found, read or parsed."""


class ModelLoadError(RankscopeError):
    """A model id, directory or file that cannot be loaded."""
