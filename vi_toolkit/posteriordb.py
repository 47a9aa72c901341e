"""Reading posteriordb posterior folders: data, Stan code and gold-standard reference draws.

A folder holds ``data.json``, ``model.stan``, ``posterior.json`` and ``reference_draws.json.zip`` (a JSON list of
chains, each ``{parameter: [draws]}``). Parameter labels are converted from Stan's 1-based ``theta[1]`` to the
toolkit's 0-based ``theta[0]`` (the labels of :func:`vi_toolkit.agreement.flatten`).
"""

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

ENV_ROOT = "VI_TOOLKIT_POSTERIORDB"


def default_root():
    """The posteriordb folder to use: $VI_TOOLKIT_POSTERIORDB, else ../shared/data/posteriordb beside the
    project; None where neither exists."""
    candidates = [os.environ.get(ENV_ROOT), Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriordb"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _zero_based(label):
    """``theta[1]`` -> ``theta[0]``, ``w[1,2]`` -> ``w[0,1]``; DataError for an index below 1 (not Stan's)."""
    match = re.fullmatch(r"(.+)\[([\d,\s]+)\]", label)
    if not match:
        return label
    indices = [int(i) for i in match.group(2).split(",")]
    if min(indices) < 1:
        raise DataError(f"reference draws label {label!r} is not 1-based as Stan writes it; is the file from posteriordb?")
    return f"{match.group(1)}[{','.join(str(i - 1) for i in indices)}]"


@dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior: its data, Stan code and reference draws (label -> (chains, draws))."""

    name: str
    data: dict
    stan_code: str
    reference: dict

    def reference_draws(self):
        """label -> 1-D array of all reference draws, chains stacked."""
        return {label: chains.reshape(-1) for label, chains in self.reference.items()}

    def reference_moments(self):
        """label -> (mean, sd) of the reference draws."""
        return {label: (float(v.mean()), float(v.std(ddof=1))) for label, v in self.reference_draws().items()}


def load(folder):
    """Read the posteriordb posterior in ``folder``."""
    folder = Path(folder)
    needed = ["data.json", "reference_draws.json.zip"]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{str(folder)!r} is not a posteriordb posterior folder: missing {', '.join(missing)}")
    try:
        data = json.loads((folder / "data.json").read_text(encoding="utf-8"))
        with zipfile.ZipFile(folder / "reference_draws.json.zip") as archive:
            chains = json.loads(archive.read(archive.namelist()[0]))
    except (OSError, ValueError, IndexError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{str(folder)!r} holds an unreadable data.json or reference_draws.json.zip ({type(exc).__name__}: "
                        f"{exc}); download the posterior again") from None
    if not isinstance(data, dict) or not isinstance(chains, list) or not chains or not isinstance(chains[0], dict):
        raise DataError(f"{str(folder)!r}: data.json must hold an object and the reference draws a list of chains")
    labels = list(chains[0])
    try:
        reference = {_zero_based(label): np.array([chain[label] for chain in chains], dtype=float) for label in labels}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{str(folder)!r}: reference draws are not numeric chains of equal length ({exc})") from None
    bad = sorted(label for label, values in reference.items() if values.ndim != 2 or not np.isfinite(values).all())
    if bad:
        raise DataError(f"{str(folder)!r}: reference draws of {bad[:5]} are ragged or hold NaN/inf values")
    stan = folder / "model.stan"
    return Posterior(folder.name, data, stan.read_text() if stan.is_file() else "", reference)
