"""Experiments: a named, configurable run that writes tables, figures and results into a run folder.

An experiment module defines ``EXPERIMENT = Experiment(name, description, Config, demo, run)``: ``Config`` a
frozen dataclass whose defaults are the full-size run, ``demo`` the overrides of the demo-size run, and
``run(config, folder, seed) -> str`` the work, returning a one-paragraph summary.
"""

import dataclasses
import json
import math
import re
import time
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .validate import seed as check_seed


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: type
    demo: dict
    run: typing.Callable

    def options(self):
        """Config field name -> (type, default)."""
        hints = typing.get_type_hints(self.config)
        return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(self.config)}

    def settings_help(self):
        """Config field name -> one line of help: the field's ``metadata["help"]``, else its line
        ``name: text`` in the Config docstring, else ""."""
        documented = {}
        for line in (self.config.__doc__ or "").splitlines():
            match = re.match(r"\s*([A-Za-z_]\w*)\s*:\s*(.+)$", line)
            if match:
                documented[match.group(1)] = match.group(2).strip()
        return {f.name: str(f.metadata.get("help") or documented.get(f.name, ""))
                for f in dataclasses.fields(self.config)}

    def settings_text(self):
        """The settings as help text: name, type, default (full size, and the demo's where it differs), help."""
        rows = []
        helps = self.settings_help()
        for name, (kind, default) in self.options().items():
            shown = _show(default)
            if name in self.demo and self.demo[name] != default:
                shown += f" (demo {_show(self.demo[name])})"
            rows.append((name, _type_name(kind), shown, helps.get(name, "")))
        width = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
        lines = [f"settings of {self.name} (--set KEY=VALUE, repeatable; lists comma-separated, e.g. "
                 "--set guides=normal,mvn; or a TOML/JSON file with --config):"]
        lines += [f"  {n:<{width[0]}}  {t:<{width[1]}}  default {d:<{width[2]}}  {h}".rstrip() for n, t, d, h in rows]
        return "\n".join(lines)


def _type_name(kind):
    """``int``, ``float``, ``str``, ``bool``, or ``list of str`` for a ``tuple[str, ...]``."""
    origin = typing.get_origin(kind) or kind
    if origin is tuple:
        (item,) = set(typing.get_args(kind)) - {Ellipsis} or {str}
        return f"list of {item.__name__}"
    return getattr(kind, "__name__", str(kind))


def _show(value):
    """A default as it would be typed on the command line."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if value else '""'
    if isinstance(value, str):
        return value if value else '""'
    return str(value).lower() if isinstance(value, bool) else str(value)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(experiment, key, value, kind):
    """``value`` (from a file or a ``key=value`` string) as the config field's type."""
    origin = typing.get_origin(kind) or kind
    try:
        if isinstance(value, str) and origin is not str:
            text = value.strip()
            if origin is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                return text.lower() in _TRUE
            if origin is tuple:
                value = [part.strip() for part in text.split(",") if part.strip()]
            else:
                value = origin(text)
                if origin is float and not math.isfinite(value):
                    raise ValueError
                return value
        if origin is tuple:
            (item,) = set(typing.get_args(kind)) - {Ellipsis} or {str}
            return tuple(item(v) for v in value)
        if origin is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if origin is bool and not isinstance(value, bool):
            raise ValueError
        if not isinstance(value, origin):
            raise ValueError
        return value
    except (ValueError, TypeError):
        raise ConfigError(
            f"{experiment.name}: {key}={value!r} is not a valid {getattr(kind, '__name__', kind)}"
        ) from None


def read_config_file(path):
    """A mapping of config overrides from a .toml or .json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of key = value settings")
    return data


def parse_assignments(assignments):
    """``["steps=100", "lr=0.1"]`` -> ``{"steps": "100", "lr": "0.1"}``."""
    out = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, got {item!r}")
        out[key.strip()] = value
    return out


def build_config(experiment, *, demo=False, overrides=None):
    """The experiment's config: defaults, then the demo sizes (if ``demo``), then ``overrides``."""
    options = experiment.options()
    values = dict(experiment.demo) if demo else {}
    for key, value in (overrides or {}).items():
        if key not in options:
            raise ConfigError(
                f"{experiment.name} has no setting {key!r}; its settings: {', '.join(sorted(options))}"
            )
        values[key] = _coerce(experiment, key, value, options[key][0])
    try:
        config = experiment.config(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{experiment.name}: {exc}") from None
    for key, (kind, default) in options.items():
        _check_value(experiment, key, getattr(config, key), kind, default)
    return config


def _check_value(experiment, key, value, kind, default):
    """The checks every setting gets from its type: whole numbers are counts (>= 1, or >= 0 where the default
    is 0), numbers are finite, lists are not empty (unless empty by default); experiments check the rest."""
    origin = typing.get_origin(kind) or kind
    problem = None
    if origin is int and value < (0 if default == 0 else 1):
        problem = f"must be a whole number >= {0 if default == 0 else 1}"
    elif origin is float and not math.isfinite(value):
        problem = "must be a finite number"
    elif origin is tuple and not value and default:
        problem = "must list at least one value (comma-separated, e.g. guides=normal,mvn)"
    known = _REGISTRIES[key]() if key in _REGISTRIES else None
    if known is not None and origin is tuple and not set(value) <= set(known):
        problem = f"names {sorted(set(value) - set(known))} unknown; choose from {sorted(known)}"
    if problem:
        raise ConfigError(f"{experiment.name}: {key}={value!r} {problem}")


def _guides():
    from .guides import AUTOGUIDES

    return AUTOGUIDES


def _objectives():
    from .objectives import OBJECTIVES

    return OBJECTIVES


_REGISTRIES = {"guides": _guides, "objectives": _objectives}  # settings whose values are registered names


def run_experiment(experiment, config, folder, seed):
    """Run ``experiment`` into ``folder`` (a RunFolder) and record what was run in experiment.json."""
    start = time.perf_counter()
    summary = experiment.run(config, folder, check_seed(seed))
    record = {
        "name": experiment.name,
        "description": experiment.description,
        "config": dataclasses.asdict(config),
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "summary": summary,
    }
    folder.write_json("experiment.json", record)
    return record
