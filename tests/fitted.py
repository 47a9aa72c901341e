"""What a mean-field Gaussian fit holds for one site, whichever class ``fit_vi`` built for ``"normal"``."""

import torch


def mean_field(result, site):
    """(loc, scale) of the fit's Gaussian over ``site``'s unconstrained value: Pyro's ``AutoNormal`` parameters,
    or the whitened diagonal guide's q(u) = N(m + s a, (s sigma)^2) unpacked to the site."""
    params = result.params
    if f"AutoNormal.locs.{site}" in params:
        return params[f"AutoNormal.locs.{site}"], params[f"AutoNormal.scales.{site}"]
    with result.isolated(0), torch.no_grad():
        loc, scale = result.guide._loc_scale(*result.args, **result.kwargs)
        locs = {s["name"]: v for s, v in result.guide._unpack_latent(loc)}
        scales = {s["name"]: v for s, v in result.guide._unpack_latent(scale)}
    return locs[site].clone(), scales[site].clone()
