"""`vae-likelihoods` (questions 1 and 2): per-pixel losses and the mean-or-sample gap against closed forms; the
BCE decoder's density."""

import math

import pandas as pd
import pytest
import torch

from vi_toolkit import experiments, models
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.run_folder import RunFolder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    experiment = experiments.get("vae-likelihoods")
    config = build_config(experiment, overrides={"epochs": 1, "k": 10, "samples": 400,
                                                 "decoders": "bce,gaussian-learned"})
    folder = RunFolder.create(tmp_path_factory.mktemp("run") / "vae-likelihoods", meta={})
    record = run_experiment(experiment, config, folder, seed=0)
    names = ("likelihoods", "pixel-loss", "mean-or-sample")
    return {n: pd.read_csv(folder.path / "tables" / f"{n}.csv") for n in names}, record["summary"]


def test_per_pixel_losses_have_their_closed_form_minima(run):
    """The BCE -t log p - (1-t) log(1-p) is smallest at p = t, where it is the entropy H(t): 0.5004 nats at 0.2,
    0.6730 at 0.4 (grid step 0.005: within 1e-3 nats); the Gaussian's minimum log(s sqrt(2 pi)) is the same for
    both targets; the continuous Bernoulli's normalizer moves its minimum away from the target."""
    table = run[0]["pixel-loss"]
    entropy = lambda t: -(t * math.log(t) + (1 - t) * math.log(1 - t))  # noqa: E731
    for t in (0.2, 0.4):
        part = table[table.target == t]
        for name, curve in part.groupby("loss"):
            best = curve.loc[curve.nats.idxmin()]
            if name.startswith("BCE"):
                assert abs(best.nats - entropy(t)) < 1e-3 and abs(best.predicted - t) < 0.01
            elif name.startswith("Gaussian"):
                assert abs(best.nats - math.log(0.1 * math.sqrt(2 * math.pi))) < 1e-3
            else:
                assert abs(best.predicted - t) > 0.05


def test_the_decoder_mean_is_d_over_2_nats_more_likely_than_a_sample(run):
    """For a Gaussian decoder, log p(mean|z) - log p(x|z) with x ~ p(x|z) is half a chi-square with D = 64
    degrees of freedom: mean D/2 = 32, sd sqrt(D/2) = 5.7 per draw, so over 400 draws within 4 se = 1.2 nats."""
    table = run[0]["mean-or-sample"].set_index("images")
    gap = table.log_p_x_given_z["decoder mean"] - table.log_p_x_given_z["decoder sample"]
    assert abs(gap - 32) < 4 * math.sqrt(32 / 400)
    likelihoods = run[0]["likelihoods"]
    assert len(likelihoods) == 2 and likelihoods.bits_per_dim.notna().all()
    assert "Q1 (BCE or MSE?)" in run[1] and "Q2 (decoder mean or a sample?)" in run[1]


def test_the_bce_decoder_is_a_continuous_bernoulli_missing_its_normalizer():
    """log CB(x; lambda) - [x log lambda + (1-x) log(1-lambda)] = log C(lambda) >= log 2 for every pixel, and
    the BCE decoder's density (as_density) is the continuous Bernoulli with the same logits."""
    vae = models.get("vae", x_dim=5, z_dim=2, hidden=(4,), decoder="bce", seed=0)
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        bce = vae.decode(z)
        density = vae.as_density().decode(z)
        logits = bce.base_dist.logits
        log_c = torch.distributions.ContinuousBernoulli(logits=logits)._cont_bern_log_norm()
        torch.testing.assert_close(density.log_prob(x) - bce.log_prob(x), log_c.sum(-1))
        torch.testing.assert_close(bce.mean, torch.sigmoid(logits))
    assert bool((log_c >= math.log(2) - 1e-6).all())
    assert vae.likelihood == "bce"  # as_density works on a copy
