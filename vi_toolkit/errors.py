"""Typed errors: every failure the toolkit reports derives from :class:`VIToolkitError`."""


class VIToolkitError(Exception):
    """Base class of every error raised by vi-toolkit; the message says what was wrong and how to fix it."""


class DataError(VIToolkitError, ValueError):
    """Input data has the wrong shape, type or values (NaN, out of range, mismatched lengths)."""


class UnknownNameError(VIToolkitError, LookupError):
    """A model, guide, objective or experiment name is not registered."""

    def __str__(self):  # LookupError subclasses would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ModelGuideError(VIToolkitError):
    """The model and guide do not fit together (missing or extra sites), or one of them raised during a fit:
    ``step`` names the step and ``partial_result`` keeps the last good parameters (None before the first)."""

    def __init__(self, message, *, step=None, partial_result=None):
        super().__init__(message)
        self.step = step
        self.partial_result = partial_result


class NumericalError(VIToolkitError, FloatingPointError):
    """A loss or gradient became NaN or infinite; ``partial_result`` keeps the last good parameters."""

    def __init__(self, message, *, step=None, sites=(), partial_result=None):
        super().__init__(message)
        self.step = step
        self.sites = tuple(sites)
        self.partial_result = partial_result


class CheckpointError(VIToolkitError):
    """A checkpoint file is unreadable or belongs to a different fit."""


class ConfigError(VIToolkitError, ValueError):
    """An experiment configuration value is unknown or of the wrong type."""


class RunFolderError(VIToolkitError):
    """A run folder cannot be created or read (it exists already, or it is not a run folder)."""
