"""posteriordb's ``nes`` regressions in Pyro: party identification on ideology and demographics, 1972-1996.

One Stan model (a Gaussian linear regression, :class:`~vi_toolkit.models.pdb_regression.GaussianRegression`)
on seven National Election Study years (N = 1330 in 1972; each year is one posteriordb posterior and one pair,
``nes-1972`` ... ``nes-1996``). Stan's ``transformed data`` turns ``age_discrete`` (1-4) into indicators of the
age groups 30-44, 45-64 and 65+. Stan's flat priors on ``beta`` and on ``sigma > 0`` become
``beta ~ Normal(0, 1000)`` and ``sigma ~ HalfNormal(1000)`` (largest |mean| x sd of the reference draws 1.4: a
shift of < 1e-5 sds). Labels ``beta[0]`` ... ``beta[8]`` (Stan's ``beta[1]`` ... ``beta[9]``) and ``sigma``.
Data: ``vi_toolkit.posteriordb.load(root / "nes1972-nes").data``, the model's arguments by name.
"""

from vi_toolkit.models import register
from vi_toolkit.models.pdb_regression import GaussianRegression


class NES(GaussianRegression):
    """partyid7 ~ N(beta_0 + beta_1 real_ideo + beta_2 race_adj + beta_3 age30_44 + beta_4 age45_64
    + beta_5 age65up + beta_6 educ1 + beta_7 gender + beta_8 income, sigma)."""

    description = "posteriordb nes: Gaussian regression of party identification on ideology and demographics"

    def design(self, partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete):
        ages = [(age_discrete == group).to(partyid7.dtype) for group in (2, 3, 4)]
        return partyid7, [real_ideo, race_adj, *ages, educ1, gender, income]

    def model(self, partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete):
        self.regression(*self.design(partyid7, real_ideo, race_adj, educ1, gender, income, age_discrete))


@register("nes-1972")
class NES1972(NES):
    posteriordb = "nes1972-nes"


@register("nes-1976")
class NES1976(NES):
    posteriordb = "nes1976-nes"


@register("nes-1980")
class NES1980(NES):
    posteriordb = "nes1980-nes"


@register("nes-1984")
class NES1984(NES):
    posteriordb = "nes1984-nes"


@register("nes-1988")
class NES1988(NES):
    posteriordb = "nes1988-nes"


@register("nes-1992")
class NES1992(NES):
    posteriordb = "nes1992-nes"


@register("nes-1996")
class NES1996(NES):
    posteriordb = "nes1996-nes"
