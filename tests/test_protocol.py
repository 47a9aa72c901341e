"""One test over every result kind: each implements the posterior protocol (vi_toolkit.posterior) the same way,
and its draws agree with the exact posterior they approximate."""

import math

import numpy as np
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit import models
from vi_toolkit.models.gmm_cavi import fit_cavi


@pytest.fixture(scope="module")
def results(normal_mean, nm_fit1, nm_mcmc, tmp_path_factory):
    """name -> (result, exact posterior mean and sd of its first site, site) for every kind of result."""
    pair, y, exact = normal_mean
    folder = tmp_path_factory.mktemp("saved")
    gmm = models.get("gmm", K=2, D=1)
    x, _, true_locs = gmm.simulate(seed=0, n=400, separation=4.0, D=1, K=2, scale=0.5)
    cavi = fit_cavi(gmm, x, seed=0)
    exact_draws = {"mu": exact.sample((4000,)).numpy()}
    moment_matched = vt.fit_to_draws("normal", exact_draws, y, model=pair.model)
    m, s = float(exact.mean), float(exact.stddev)
    return {
        "vi": (nm_fit1, (m, s), "mu"),
        "fit_to_draws": (moment_matched, (m, s), "mu"),
        "mcmc": (nm_mcmc, (m, s), "mu"),
        "saved vi": (vt.load_result(nm_fit1.save(folder / "vi")), (m, s), "mu"),
        "saved mcmc": (vt.load_result(nm_mcmc.save(folder / "mcmc")), (m, s), "mu"),
        "cavi": (cavi, (float(true_locs.sum()), None), "locs"),
    }


KINDS = ["vi", "fit_to_draws", "mcmc", "saved vi", "saved mcmc", "cavi"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_result_kind_implements_the_protocol(results, kind):
    result, (mean, sd), site = results[kind]
    assert isinstance(result, vt.Posterior)
    assert isinstance(result.seconds, float) and result.seconds >= 0
    assert isinstance(result.info, dict) and isinstance(result.info["method"], str)
    assert result.losses is None or np.asarray(result.losses).ndim == 1

    own = result.draws()
    assert set(own) >= {site} and len({len(v) for v in own.values()}) == 1
    fifty = result.draws(50, seed=1)
    assert {name: v.shape[1:] for name, v in fifty.items()} == {name: v.shape[1:] for name, v in own.items()}
    assert all(len(v) == 50 for v in fifty.values())
    for name, value in result.draws(50, seed=1).items():  # same seed, same draws
        np.testing.assert_array_equal(value, fifty[name])
    assert not np.array_equal(result.draws(50, seed=2)[site], fifty[site])

    idata = result.to_inference_data()
    assert set(idata.posterior.data_vars) >= {site}
    assert idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"] == len(own[site])

    log_w = result.log_weights(100, seed=0)
    assert log_w is None or (tuple(log_w.shape) == (100,) and torch.isfinite(log_w).all())

    values = own[site]
    if sd is not None:  # the normal-mean posterior: every method's mean within 4 Monte Carlo errors, sd within 5%
        assert abs(values.mean() - mean) < 4 * sd / math.sqrt(min(len(values), 1000))
        assert abs(values.std(ddof=1) / sd - 1) < 0.05
    else:  # the mixture: the two component means sum to the truth's sum (label-free), to 0.2
        assert abs(values.sum(axis=(1, 2)).mean() - mean) < 0.2


def test_compare_takes_every_kind_alike(results, normal_mean):
    _, _, exact = normal_mean
    table = vt.compare({k: results[k][0] for k in KINDS if k != "cavi"}, {"mu": exact}).set_index("method")
    assert (table.std_mean_error_max < 0.1).all()
    has_density = {k for k in KINDS if k != "cavi" and results[k][0].log_weights(10) is not None}
    assert has_density == {"vi", "fit_to_draws"}
    assert table.loc[sorted(has_density), "khat"].notna().all()
    assert table.drop(index=sorted(has_density)).khat.isna().all()
