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
    """``theta[1]`` -> ``theta[0]``, ``w[1,2]`` -> ``w[0,1]``."""
    match = re.fullmatch(r"(.+)\[([\d,\s]+)\]", label)
    if not match:
        return label
    indices = ",".join(str(int(i) - 1) for i in match.group(2).split(","))
    return f"{match.group(1)}[{indices}]"


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
    data = json.loads((folder / "data.json").read_text())
    with zipfile.ZipFile(folder / "reference_draws.json.zip") as archive:
        chains = json.loads(archive.read(archive.namelist()[0]))
    labels = list(chains[0])
    reference = {_zero_based(label): np.array([chain[label] for chain in chains], dtype=float) for label in labels}
    stan = folder / "model.stan"
    return Posterior(folder.name, data, stan.read_text() if stan.is_file() else "", reference)
