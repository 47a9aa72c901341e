"""Validation of settings at the boundary (pair constructors): a clear ConfigError or the clean value."""

import math

import numpy as np

from .errors import ConfigError


def finite(name, value):
    """``value`` as a float, or ConfigError if it is not a finite number."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.number)) and math.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive(name, value):
    """``value`` as a float, or ConfigError if it is not a positive finite number."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def between(name, value, low, high):
    """``value`` as a float, or ConfigError if it is not a number strictly between ``low`` and ``high``."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.number)) and low < value < high):
        raise ConfigError(f"{name} must be a number in ({low}, {high}), got {value!r}")
    return float(value)


def whole(name, value, low=1, allow_none=False):
    """``value`` as an int >= ``low`` (or None where allowed), or ConfigError."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def seed(value):
    """A random seed as an int in [0, 2**32), numpy's range, or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**32:
        raise ConfigError(f"seed must be a whole number in [0, 2**32), got {value!r}")
    return int(value)
