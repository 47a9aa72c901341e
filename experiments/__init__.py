"""Experiments by name: each module here that defines ``EXPERIMENT`` is one (a new experiment is one new file);
``common`` holds what they share. Tests and benchmarks reach an experiment only through :func:`get` and
:mod:`vi_toolkit.experiment` (``build_config``, ``run_experiment``), never through a module's internals."""

import importlib
import pkgutil

from vi_toolkit.errors import UnknownNameError


def _all():
    found = {}
    for module in pkgutil.iter_modules(__path__):
        experiment = getattr(importlib.import_module(f"{__name__}.{module.name}"), "EXPERIMENT", None)
        if experiment is not None:
            found[experiment.name] = experiment
    return found


def available():
    """Names of the registered experiments, sorted."""
    return sorted(_all())


def describe():
    return {name: exp.description for name, exp in sorted(_all().items())}


def get(name):
    experiments = _all()
    if name not in experiments:
        raise UnknownNameError(f"unknown experiment {name!r}; available: {', '.join(sorted(experiments))}")
    return experiments[name]
