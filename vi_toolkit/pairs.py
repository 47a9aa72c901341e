"""The model/guide pair: the unit that every analysis of the toolkit takes."""


class ModelPair:
    """A Pyro ``model`` with a default ``guide``, both called with the same data arguments.

    Pairs with exact answers also define ``posterior(*args) -> {site: torch Distribution}`` and
    ``log_evidence(*args) -> float`` (log p(data)); ``simulate(seed=0, **size) -> args`` makes example data.
    """

    name = None
    description = ""

    def model(self, *args, **kwargs):
        raise NotImplementedError

    def guide(self, *args, **kwargs):
        raise NotImplementedError

    @property
    def has_exact_posterior(self):
        return callable(getattr(self, "posterior", None))

    @property
    def has_exact_evidence(self):
        return callable(getattr(self, "log_evidence", None))

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"
