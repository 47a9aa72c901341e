"""Sweep files: an experiment, a grid of settings and seeds, and extra trials, checked whole before anything runs.

A sweep file (TOML or JSON; or the same keys as a dict)::

    experiment = "vi-vs-mcmc"
    seeds = [0, 1]                      # default [0]
    name = "guides"                     # optional: the default folder is sweeps/<name> (else the file's stem)
    table = "comparison"                # optional: the trials' main table (default: the first by name)

    [settings]                          # the same for every trial
    objectives = "elbo"
    steps = 300

    [grid]                              # every combination of these values, each with every seed
    target = ["normal-mean", "linear-regression"]
    guides = ["normal", "mvn"]

    [[trials]]                          # extra trials: settings on top of [settings]; seed or seeds optional
    target = "normal-mean"              # (default: the sweep's seeds)
    guides = "iaf"
    seed = 7

Every trial's configuration is built with :func:`vi_toolkit.experiment.build_config` here, so a bad name, value
or seed anywhere in the file raises a :class:`~vi_toolkit.errors.ConfigError` before any folder exists. A trial
is identified by a content hash of (experiment, full configuration, seed, ``vi_toolkit.__version__``): the name
of its run folder, so equal trials written two ways are one trial, and a new toolkit version redoes them.
"""

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, VIToolkitError
from .experiment import build_config, read_config_file
from .validate import seed as check_seed

KEYS = {"experiment", "seeds", "name", "table", "settings", "grid", "trials"}
HASH_CHARS = 16  # hex characters of the content hash in a trial folder's name


@dataclass(frozen=True)
class Trial:
    """One trial: the settings the sweep file gave it, its full configuration, its seed and its content hash."""

    settings: dict
    config: object
    seed: int
    hash: str

    @property
    def folder_name(self):
        return self.hash[:HASH_CHARS]

    def label(self, columns=None):
        shown = {k: self.settings[k] for k in (columns or self.settings) if k in self.settings}
        return " ".join(f"{k}={_show(v)}" for k, v in shown.items()) + f" seed={self.seed}"


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: the experiment, the trials (grid first, then the extra ones; no duplicates), the swept
    setting names (the table's setting columns), the main table's name (or None) and a default name."""

    experiment: object
    trials: tuple
    swept: tuple
    table: str
    name: str
    source: dict

    def describe(self):
        return {
            "experiment": self.experiment.name,
            "trials": len(self.trials),
            "swept": list(self.swept),
            "seeds": sorted({t.seed for t in self.trials}),
        }


def _experiments():
    from vi_toolkit import experiments

    return experiments


def load_spec(spec_or_path):
    """The :class:`SweepSpec` of a sweep file path, a dict of its keys, or a SweepSpec (returned as is)."""
    if isinstance(spec_or_path, SweepSpec):
        return spec_or_path
    if isinstance(spec_or_path, (str, Path)):
        path = Path(spec_or_path)
        data = read_config_file(path)
        default_name = path.stem
    elif isinstance(spec_or_path, dict):
        data, default_name = dict(spec_or_path), None
    else:
        raise ConfigError(f"a sweep is a sweep file path or a dict of its keys, got {type(spec_or_path).__name__}")
    return parse_spec(data, default_name)


def parse_spec(data, default_name=None):
    """Check every key of a sweep's dict and build every trial's configuration."""
    unknown = set(data) - KEYS
    if unknown:
        raise ConfigError(f"sweep file: unknown keys {sorted(unknown)}; a sweep file has {sorted(KEYS)}")
    if "experiment" not in data:
        raise ConfigError("sweep file: name the experiment (experiment = \"vi-vs-mcmc\")")
    if not isinstance(data["experiment"], str):
        raise ConfigError(f"sweep file: experiment must be a name, got {data['experiment']!r}")
    experiment = _experiments().get(data["experiment"])  # UnknownNameError names the available ones
    seeds = _seeds(data.get("seeds", [0]), "seeds")
    settings = _table(data, "settings")
    grid = _table(data, "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep file: grid.{key} must be a non-empty list of values, got {values!r}")
    both = sorted(set(settings) & set(grid))
    if both:
        raise ConfigError(f"sweep file: {both} set in both [settings] and [grid]; keep each in one")
    extra = data.get("trials", [])
    if not isinstance(extra, list) or not all(isinstance(t, dict) for t in extra):
        raise ConfigError("sweep file: trials must be a list of tables ([[trials]] with key = value settings)")
    name = data.get("name", default_name) or experiment.name
    if not isinstance(name, str) or not name.strip() or "/" in name or name.startswith("."):
        raise ConfigError(f"sweep file: name must be a plain folder name, got {name!r}")
    table = data.get("table")
    if table is not None and (not isinstance(table, str) or not table):
        raise ConfigError(f"sweep file: table must be a table name, got {table!r}")

    candidates = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        for seed in seeds:
            candidates.append(({**settings, **dict(zip(keys, combo))}, seed))
    swept = list(keys)
    for k, entry in enumerate(extra):
        entry = dict(entry)
        if "seed" in entry and "seeds" in entry:
            raise ConfigError(f"sweep file: trials[{k}] has both seed and seeds; give one")
        trial_seeds = _seeds([entry.pop("seed")], f"trials[{k}].seed") if "seed" in entry else (
            _seeds(entry.pop("seeds"), f"trials[{k}].seeds") if "seeds" in entry else seeds)
        swept += [key for key in entry if key not in swept]
        for seed in trial_seeds:
            candidates.append(({**settings, **entry}, seed))
    if not candidates:
        raise ConfigError("sweep file: no trials (an empty grid and no extra trials)")

    trials, seen = [], set()
    for given, seed in candidates:
        trial = make_trial(experiment, given, seed)
        if trial.hash not in seen:  # a trial listed twice (grid and extra, or two spellings) runs once
            seen.add(trial.hash)
            trials.append(trial)
    source = {k: v for k, v in data.items()}
    return SweepSpec(experiment, tuple(trials), tuple(swept), table, name.strip(), source)


def make_trial(experiment, settings, seed):
    """The :class:`Trial` of ``settings`` (overrides of the experiment's defaults) and ``seed``."""
    from . import __version__
    from .problem import content_hash

    try:
        config = build_config(experiment, overrides=settings)
    except VIToolkitError as exc:
        raise type(exc)(f"sweep file: trial {_describe(settings, seed)}: {exc}") from None
    key = {"experiment": experiment.name, "config": dataclasses.asdict(config), "seed": seed, "version": __version__}
    return Trial(dict(settings), config, seed, content_hash(key))


def _table(data, key):
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"sweep file: [{key}] must be a table of key = value settings, got {value!r}")
    return dict(value)


def _seeds(values, where):
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep file: {where} must be a non-empty list of whole numbers, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"sweep file: {where}: {value!r} is not a whole number")
        try:
            out.append(check_seed(value))
        except VIToolkitError as exc:
            raise ConfigError(f"sweep file: {where}: {exc}") from None
    if len(set(out)) != len(out):
        raise ConfigError(f"sweep file: {where} lists a seed twice: {values!r}")
    return out


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _describe(settings, seed):
    return " ".join(f"{k}={_show(v)}" for k, v in settings.items()) + f" seed={seed}"
