"""vi-toolkit: variational inference with Pyro, compared with MCMC and with the true log evidence.

    import vi_toolkit as vt
    result = vt.fit_vi(model, "normal", data)       # SVI with a settled, checked, isolated engine
    state = vt.svi.init(model, "normal", data)      # ... or the same fit one explicit step at a time
    mcmc = vt.run_mcmc(model, data)                 # NUTS baseline
    result.to_inference_data(), mcmc.summary()      # ArviZ for both
"""

import warnings

# ArviZ 0.2x announces its 1.0 refactor on import; the toolkit pins arviz<1, so the notice is noise here.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)

from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    ModelGuideError,
    NumericalError,
    RunFolderError,
    UnknownNameError,
    VIToolkitError,
)
from . import svi  # noqa: E402
from .bounds import AIS, Bounds, Estimate, bounds
from .compare import compare
from .diagnostics import khat_verdict, psis_khat
from .fit_to_draws import fit_to_draws
from .forward_kl import MarkovianScoreClimbing, ReweightedWakeSleep
from .guides import AUTOGUIDES
from .mcmc import MCMCResult, run_mcmc
from .objectives import OBJECTIVES, Objective, register_objective
from .pairs import ModelPair
from .posterior import Posterior
from .problem import Problem
from .results import load_result
from .schedule import CONSTANT, Schedule
from .vi import VIResult, fit_vi

__version__ = "0.1.0"

__all__ = [
    "AIS",
    "AUTOGUIDES",
    "Bounds",
    "CONSTANT",
    "OBJECTIVES",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Estimate",
    "MCMCResult",
    "MarkovianScoreClimbing",
    "ModelGuideError",
    "ModelPair",
    "NumericalError",
    "Objective",
    "Posterior",
    "Problem",
    "ReweightedWakeSleep",
    "RunFolderError",
    "Schedule",
    "UnknownNameError",
    "VIResult",
    "VIToolkitError",
    "bounds",
    "compare",
    "fit_to_draws",
    "fit_vi",
    "khat_verdict",
    "load_result",
    "psis_khat",
    "register_objective",
    "run_mcmc",
    "svi",
]
