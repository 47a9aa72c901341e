"""posteriordb's ``kidiq`` and ``kidiq_with_mom_work`` regressions in Pyro: children's test scores on their
mothers' high school completion, IQ and work.

Six Stan models, each a Gaussian linear regression (:class:`~vi_toolkit.models.pdb_regression.GaussianRegression`)
whose ``transformed data`` block (interactions, centring, work indicators) is the pair's ``design``. On data
``kidiq`` Stan puts ``sigma ~ cauchy(0, 2.5)`` (lower=0): here ``HalfCauchy(2.5)``, the same density; on
``kidiq_with_mom_work`` sigma's prior is flat. Flat priors become ``beta ~ Normal(0, 1000)`` and
``sigma ~ HalfNormal(1000)`` (largest |mean| x sd of the reference draws 778: a shift of < 0.001 sds).
Labels ``beta[0]`` ... ``beta[K-1]`` (Stan's ``beta[1]`` ... ``beta[K]``) and ``sigma``. Data:
``vi_toolkit.posteriordb.load(root / "kidiq-kidscore_momhs").data``, the model's arguments by name.
"""

import pyro.distributions as dist

from vi_toolkit.models import register
from vi_toolkit.models.pdb_regression import GaussianRegression


class KidIQ(GaussianRegression):
    """A regression of kid_score on the mother's predictors, sigma ~ HalfCauchy(2.5) (data ``kidiq``)."""

    description = "posteriordb kidiq: Gaussian regression of children's test scores on their mothers' traits"

    def sigma_prior(self):
        return dist.HalfCauchy(2.5)


@register("kidiq-momhs")
class KidScoreMomHS(KidIQ):
    """kid_score ~ N(beta_0 + beta_1 mom_hs, sigma)."""

    posteriordb = "kidiq-kidscore_momhs"

    def design(self, kid_score, mom_hs):
        return kid_score, [mom_hs]

    def model(self, kid_score, mom_hs):
        self.regression(*self.design(kid_score, mom_hs))


@register("kidiq-momhsiq")
class KidScoreMomHSIQ(KidIQ):
    """kid_score ~ N(beta_0 + beta_1 mom_hs + beta_2 mom_iq, sigma)."""

    posteriordb = "kidiq-kidscore_momhsiq"

    def design(self, kid_score, mom_iq, mom_hs):
        return kid_score, [mom_hs, mom_iq]

    def model(self, kid_score, mom_iq, mom_hs):
        self.regression(*self.design(kid_score, mom_iq, mom_hs))


@register("kidiq-interaction")
class KidScoreInteraction(KidIQ):
    """kid_score ~ N(beta_0 + beta_1 mom_hs + beta_2 mom_iq + beta_3 mom_hs mom_iq, sigma)."""

    posteriordb = "kidiq-kidscore_interaction"

    def design(self, kid_score, mom_iq, mom_hs):
        return kid_score, [mom_hs, mom_iq, mom_hs * mom_iq]

    def model(self, kid_score, mom_iq, mom_hs):
        self.regression(*self.design(kid_score, mom_iq, mom_hs))


class KidIQWithMomWork(GaussianRegression):
    """A regression of kid_score with flat priors on beta and sigma (data ``kidiq_with_mom_work``)."""

    description = "posteriordb kidiq_with_mom_work: Gaussian regression of children's test scores"


@register("kidiq-interaction-c")
class KidScoreInteractionC(KidIQWithMomWork):
    """kid_score ~ N(beta_0 + beta_1 c_hs + beta_2 c_iq + beta_3 c_hs c_iq, sigma), predictors centred at
    their means."""

    posteriordb = "kidiq_with_mom_work-kidscore_interaction_c"

    def design(self, kid_score, mom_hs, mom_iq):
        c_mom_hs, c_mom_iq = mom_hs - mom_hs.mean(), mom_iq - mom_iq.mean()
        return kid_score, [c_mom_hs, c_mom_iq, c_mom_hs * c_mom_iq]

    def model(self, kid_score, mom_hs, mom_iq):
        self.regression(*self.design(kid_score, mom_hs, mom_iq))


@register("kidiq-interaction-c2")
class KidScoreInteractionC2(KidIQWithMomWork):
    """kid_score ~ N(beta_0 + beta_1 c_hs + beta_2 c_iq + beta_3 c_hs c_iq, sigma), predictors centred at the
    reference points mom_hs = 0.5, mom_iq = 100."""

    posteriordb = "kidiq_with_mom_work-kidscore_interaction_c2"

    def design(self, kid_score, mom_hs, mom_iq):
        c2_mom_hs, c2_mom_iq = mom_hs - 0.5, mom_iq - 100.0
        return kid_score, [c2_mom_hs, c2_mom_iq, c2_mom_hs * c2_mom_iq]

    def model(self, kid_score, mom_hs, mom_iq):
        self.regression(*self.design(kid_score, mom_hs, mom_iq))


@register("kidiq-mom-work")
class KidScoreMomWork(KidIQWithMomWork):
    """kid_score ~ N(beta_0 + beta_1 [mom_work = 2] + beta_2 [mom_work = 3] + beta_3 [mom_work = 4], sigma)."""

    posteriordb = "kidiq_with_mom_work-kidscore_mom_work"

    def design(self, kid_score, mom_work):
        return kid_score, [(mom_work == level).to(kid_score.dtype) for level in (2, 3, 4)]

    def model(self, kid_score, mom_work):
        self.regression(*self.design(kid_score, mom_work))
