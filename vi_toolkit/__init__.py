"""vi-toolkit: variational inference with Pyro, compared with MCMC and with the true log evidence.

    import vi_toolkit as vt
    result = vt.fit_vi(model, "normal", data)       # SVI with a settled, checked, isolated engine
    state = vt.svi.init(model, "normal", data)      # ... or the same fit one explicit step at a time
    mcmc = vt.run_mcmc(model, data)                 # NUTS baseline
    result.to_inference_data(), mcmc.summary()      # ArviZ for both

The public names are imported on first use (PEP 562): ``import vi_toolkit`` itself loads neither torch, Pyro
nor ArviZ, so the command line starts at once; ``vt.fit_vi`` and ``from vi_toolkit import fit_vi`` load them.
"""

import importlib
import sys
import types
import warnings

# ArviZ 0.2x announces its 1.0 refactor on import; the toolkit pins arviz<1, so the notice is noise here.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)

from .errors import (  # noqa: E402  (light: no third-party imports)
    CheckpointError,
    ConfigError,
    DataError,
    ModelGuideError,
    NumericalError,
    RunFolderError,
    UnknownNameError,
    VIToolkitError,
)

__version__ = "0.1.0"

# public name -> the submodule that defines it (a name equal to its module is the submodule itself)
_LAZY = {
    "AIS": "bounds",
    "Bounds": "bounds",
    "Estimate": "bounds",
    "bounds": "bounds",
    "compare": "compare",
    "khat_verdict": "diagnostics",
    "fit_verdict": "diagnostics",
    "render_verdict": "diagnostics",
    "psis_khat": "diagnostics",
    "fit_to_draws": "fit_to_draws",
    "MarkovianScoreClimbing": "forward_kl",
    "ReweightedWakeSleep": "forward_kl",
    "AUTOGUIDES": "guides",
    "MCMCResult": "mcmc",
    "run_mcmc": "mcmc",
    "OBJECTIVES": "objectives",
    "Objective": "objectives",
    "register_objective": "objectives",
    "ModelPair": "pairs",
    "Posterior": "posterior",
    "Problem": "problem",
    "load_result": "results",
    "CONSTANT": "schedule",
    "Schedule": "schedule",
    "VIResult": "vi",
    "fit_vi": "vi",
    "svi": "svi",
    "sweep": "sweep",
    "METHODS": "methods",
    "run_method": "methods",
    "pathfinder": "pathfinder",
    "dadvi": "dadvi",
    "batch_and_match": "batch_match",
    "vsbc": "vsbc",
}


# functions named like the submodule that defines them: importing the submodule sets the package attribute to
# the module, so these are properties of the package's module class, always the function
_SAME_NAME = ("bounds", "compare", "fit_to_draws", "sweep", "pathfinder", "dadvi", "vsbc")


def __getattr__(name):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    if name == module_name and name not in _SAME_NAME:
        value = module  # a submodule as a public name (vt.svi)
    else:
        value = getattr(module, name)
    if name not in _SAME_NAME:
        globals()[name] = value  # later look-ups skip this function
    return value


def _function_of_submodule(name):
    def get(self):
        return getattr(importlib.import_module(f"{__name__}.{name}"), name)

    def set_(self, value):  # the import system records the submodule here; the function stays the name
        pass

    return property(get, set_)


class _Package(types.ModuleType):
    bounds = _function_of_submodule("bounds")
    compare = _function_of_submodule("compare")
    fit_to_draws = _function_of_submodule("fit_to_draws")
    sweep = _function_of_submodule("sweep")
    pathfinder = _function_of_submodule("pathfinder")
    dadvi = _function_of_submodule("dadvi")
    vsbc = _function_of_submodule("vsbc")


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
    "batch_and_match",
    "dadvi",
    "fit_to_draws",
    "fit_verdict",
    "fit_vi",
    "khat_verdict",
    "load_result",
    "pathfinder",
    "psis_khat",
    "register_objective",
    "render_verdict",
    "run_method",
    "run_mcmc",
    "svi",
    "sweep",
    "vsbc",
    "METHODS",
]
