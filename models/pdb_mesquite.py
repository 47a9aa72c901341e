"""posteriordb's ``mesquite`` regressions in Pyro: the weight of mesquite bushes on their dimensions.

Five Stan models on one data set (N = 46), each a Gaussian linear regression
(:class:`~vi_toolkit.models.pdb_regression.GaussianRegression`) whose ``transformed data`` block (logs of the
weight, canopy volume, area and shape, total height, density) is the pair's ``design``. Stan's flat priors on
``beta`` and on ``sigma > 0`` become ``beta ~ Normal(0, flat_scale)`` and ``sigma ~ HalfNormal(flat_scale)``:
``flat_scale`` = 1e4 for the weight in grams (largest |mean| x sd of the reference draws 1.1e5: a shift of
0.001 sds), 1000 on the log scale (largest 0.95). Labels ``beta[0]`` ... ``beta[K-1]`` (Stan's ``beta[1]`` ...
``beta[K]``) and ``sigma``. Data: ``vi_toolkit.posteriordb.load(root / "mesquite-mesquite").data``, the model's
arguments by name.
"""

from vi_toolkit.models import register
from vi_toolkit.models.pdb_regression import GaussianRegression


class Mesquite(GaussianRegression):
    """A regression of (the log of) mesquite weight on the bush's dimensions."""

    description = "posteriordb mesquite: Gaussian regression of mesquite bush weight on its dimensions"


@register("mesquite")
class MesquiteRaw(Mesquite):
    """weight ~ N(beta_0 + beta_1 diam1 + beta_2 diam2 + beta_3 canopy_height + beta_4 total_height
    + beta_5 density + beta_6 group, sigma)."""

    posteriordb = "mesquite-mesquite"
    flat_scale = 1e4  # weight in grams: beta_0 = -727 (sd 152), sigma = 278

    def design(self, weight, diam1, diam2, canopy_height, total_height, density, group):
        return weight, [diam1, diam2, canopy_height, total_height, density, group]

    def model(self, weight, diam1, diam2, canopy_height, total_height, density, group):
        self.regression(*self.design(weight, diam1, diam2, canopy_height, total_height, density, group))


@register("mesquite-logvolume")
class LogVolume(Mesquite):
    """log weight ~ N(beta_0 + beta_1 log(diam1 diam2 canopy_height), sigma)."""

    posteriordb = "mesquite-logmesquite_logvolume"

    def design(self, weight, diam1, diam2, canopy_height):
        return weight.log(), [(diam1 * diam2 * canopy_height).log()]

    def model(self, weight, diam1, diam2, canopy_height):
        self.regression(*self.design(weight, diam1, diam2, canopy_height))


@register("mesquite-logva")
class LogVA(Mesquite):
    """log weight ~ N(beta_0 + beta_1 log volume + beta_2 log(diam1 diam2) + beta_3 group, sigma)."""

    posteriordb = "mesquite-logmesquite_logva"

    def design(self, weight, diam1, diam2, canopy_height, group):
        return weight.log(), [(diam1 * diam2 * canopy_height).log(), (diam1 * diam2).log(), group]

    def model(self, weight, diam1, diam2, canopy_height, group):
        self.regression(*self.design(weight, diam1, diam2, canopy_height, group))


@register("mesquite-logvash")
class LogVASH(Mesquite):
    """log weight ~ N(beta_0 + beta_1 log volume + beta_2 log area + beta_3 log(diam1 / diam2)
    + beta_4 log total_height + beta_5 group, sigma)."""

    posteriordb = "mesquite-logmesquite_logvash"

    def design(self, weight, diam1, diam2, canopy_height, total_height, group):
        return weight.log(), [(diam1 * diam2 * canopy_height).log(), (diam1 * diam2).log(), (diam1 / diam2).log(),
                              total_height.log(), group]

    def model(self, weight, diam1, diam2, canopy_height, total_height, group):
        self.regression(*self.design(weight, diam1, diam2, canopy_height, total_height, group))


@register("mesquite-logvas")
class LogVAS(Mesquite):
    """log weight ~ N(beta_0 + beta_1 log volume + beta_2 log area + beta_3 log(diam1 / diam2)
    + beta_4 log total_height + beta_5 log density + beta_6 group, sigma)."""

    posteriordb = "mesquite-logmesquite_logvas"

    def design(self, weight, diam1, diam2, canopy_height, total_height, density, group):
        return weight.log(), [(diam1 * diam2 * canopy_height).log(), (diam1 * diam2).log(), (diam1 / diam2).log(),
                              total_height.log(), density.log(), group]

    def model(self, weight, diam1, diam2, canopy_height, total_height, density, group):
        self.regression(*self.design(weight, diam1, diam2, canopy_height, total_height, density, group))
