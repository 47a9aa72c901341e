"""posteriordb's ``earnings`` regressions in Pyro: earnings on height (and sex), raw, log and log10 scales.

Six Stan models on one data set (``earn``, ``height``, ``male``; N = 1192), each a Gaussian linear regression
(:class:`~vi_toolkit.models.pdb_regression.GaussianRegression`) whose ``transformed data`` block is the pair's
``design``. Stan's flat priors on ``beta`` and on ``sigma > 0`` become ``beta ~ Normal(0, flat_scale)`` and
``sigma ~ HalfNormal(flat_scale)``: ``flat_scale`` = 1e6 for ``earn`` in dollars (largest |mean| x sd of the
reference draws 5.9e8: a shift of < 0.001 sds), 1000 on the log scales (largest 9.3: < 1e-5 sds).
Labels ``beta[0]`` ... ``beta[K-1]`` (Stan's ``beta[1]`` ... ``beta[K]``) and ``sigma``. Data:
``vi_toolkit.posteriordb.load(root / "earnings-earn_height").data``, the model's arguments by name.
"""

import torch

from vi_toolkit.models import register
from vi_toolkit.models.pdb_regression import GaussianRegression


class Earnings(GaussianRegression):
    """A regression of (a transform of) earnings on height; the posteriordb posteriors of data ``earnings``."""

    description = "posteriordb earnings: Gaussian regression of earnings on height"


@register("earnings-earn-height")
class EarnHeight(Earnings):
    """earn ~ N(beta_0 + beta_1 height, sigma), earnings in dollars."""

    posteriordb = "earnings-earn_height"
    flat_scale = 1e6  # earn in dollars: beta_0 = -6e4 (sd 1e4), sigma = 1.9e4

    def design(self, earn, height):
        return earn, [height]

    def model(self, earn, height):
        self.regression(*self.design(earn, height))


@register("earnings-log10earn-height")
class Log10EarnHeight(Earnings):
    """log10(earn) ~ N(beta_0 + beta_1 height, sigma)."""

    posteriordb = "earnings-log10earn_height"

    def design(self, earn, height):
        return torch.log10(earn), [height]

    def model(self, earn, height):
        self.regression(*self.design(earn, height))


@register("earnings-logearn-height-male")
class LogEarnHeightMale(Earnings):
    """log(earn) ~ N(beta_0 + beta_1 height + beta_2 male, sigma)."""

    posteriordb = "earnings-logearn_height_male"

    def design(self, earn, height, male):
        return earn.log(), [height, male]

    def model(self, earn, height, male):
        self.regression(*self.design(earn, height, male))


@register("earnings-logearn-interaction")
class LogEarnInteraction(Earnings):
    """log(earn) ~ N(beta_0 + beta_1 height + beta_2 male + beta_3 height male, sigma)."""

    posteriordb = "earnings-logearn_interaction"

    def design(self, earn, height, male):
        return earn.log(), [height, male, height * male]

    def model(self, earn, height, male):
        self.regression(*self.design(earn, height, male))


@register("earnings-logearn-interaction-z")
class LogEarnInteractionZ(Earnings):
    """log(earn) ~ N(beta_0 + beta_1 z + beta_2 male + beta_3 z male, sigma), z = standardized height (sd with
    N - 1, as Stan's ``sd``)."""

    posteriordb = "earnings-logearn_interaction_z"

    def design(self, earn, height, male):
        z_height = (height - height.mean()) / height.std()
        return earn.log(), [z_height, male, z_height * male]

    def model(self, earn, height, male):
        self.regression(*self.design(earn, height, male))


@register("earnings-logearn-logheight-male")
class LogEarnLogHeightMale(Earnings):
    """log(earn) ~ N(beta_0 + beta_1 log(height) + beta_2 male, sigma)."""

    posteriordb = "earnings-logearn_logheight_male"

    def design(self, earn, height, male):
        return earn.log(), [height.log(), male]

    def model(self, earn, height, male):
        self.regression(*self.design(earn, height, male))
