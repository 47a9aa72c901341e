"""DReG (objective "iwae-dreg") against the plain IWAE gradient and exact answers on a linear-Gaussian model.

z ~ N(mu, 1), x | z ~ N(z, 1), guide q(z) = N(m, s): the posterior is N((x + mu) / 2, 1/sqrt(2)) and
log p(x) = log N(x; mu, sqrt(2)). Replicates are R copies of the problem side by side in a plate, each with its
own copy of the parameters, so one call of ``loss_and_grads`` gives R independent draws of each gradient
estimator (the gradient of copy r is replicate r), with k = 50 particles per replicate.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from torch.distributions import constraints, transform_to

import vi_toolkit as vt
from vi_toolkit import models
from vi_toolkit.dreg import TraceDReG_IWAE
from vi_toolkit.errors import ModelGuideError
from vi_toolkit.isolation import isolated
from vi_toolkit.objectives import Objective, make_elbo

R, K = 4000, 50  # replicates, particles


def model(x, subsample=None, subsample_size=None):
    mu = pyro.param("mu", torch.zeros(len(x)))
    with pyro.plate("data", len(x), subsample=subsample, subsample_size=subsample_size) as idx:
        z = pyro.sample("z", dist.Normal(mu[idx], 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])


def guide(x, subsample=None, subsample_size=None):
    m = pyro.param("m", torch.zeros(len(x)))
    s = pyro.param("s", torch.ones(len(x)), constraint=constraints.positive)
    with pyro.plate("data", len(x), subsample=subsample, subsample_size=subsample_size) as idx:
        pyro.sample("z", dist.Normal(m[idx], s[idx]))


def _run(elbo, x, m, s, seed, subsample=None, subsample_size=None):
    """(loss, {mu, m, s: gradient per replicate (s unconstrained)}) of one call at mu = 0, guide N(m, s) (m and s
    numbers, or tensors with one entry per data point)."""
    with isolated(seed, threads=1, params={"params": {}, "constraints": {}}):  # private stream, store, 1 thread
        pyro.param("m", torch.as_tensor(m).expand(len(x)).clone())
        pyro.param("s", torch.as_tensor(s).expand(len(x)).clone(), constraint=constraints.positive)
        loss = elbo.loss_and_grads(model, guide, x, subsample, subsample_size)
        return loss, {name: p.unconstrained().grad.clone() for name, p in pyro.get_param_store().items()}


def _pair(k=K, vectorize=True):
    kw = dict(num_particles=k, vectorize_particles=vectorize, max_plate_nesting=1)
    return TraceDReG_IWAE(**kw), RenyiELBO(alpha=0.0, **kw)


def test_iwae_dreg_is_a_registered_objective():
    elbo = make_elbo(Objective("iwae-dreg"), num_particles=K, vectorize=True, max_plate_nesting=1, jit=False)
    assert isinstance(elbo, TraceDReG_IWAE) and elbo.num_particles == K


@pytest.mark.parametrize("vectorize", [True, False])
def test_loss_equals_the_plain_iwae_bound_on_the_same_draws(vectorize):
    """Same seed, same draws: the value is Pyro's RenyiELBO(alpha=0)'s (float32 sums: 1e-6 relative), and so
    is the model parameter's gradient (both are sum_i w~_i d/dmu log p(x, z_i))."""
    x = torch.linspace(-2.0, 2.0, 30)
    dreg, plain = _pair(7, vectorize)
    for seed in range(3):
        loss_dreg, grads_dreg = _run(dreg, x, 0.3, 0.8, seed)
        loss_plain, grads_plain = _run(plain, x, 0.3, 0.8, seed)
        assert math.isclose(loss_dreg, loss_plain, rel_tol=1e-6)
        assert torch.allclose(grads_dreg["mu"], grads_plain["mu"], rtol=1e-5, atol=1e-6)


def test_mini_batch_bound_is_the_batch_bound_scaled_by_n_over_b():
    """With a subsampled plate (B = 10 of N = 40) the value is N/B times the IWAE bound of the batch's own
    points on the same draws (each point weighted by its own p(x_n, z)/q(z)), not RenyiELBO's (which raises
    each point's weights to the power N/B)."""
    x = torch.linspace(-2.0, 2.0, 40)
    idx = torch.arange(5, 15)
    dreg, plain = _pair(7)
    scaled, _ = _run(dreg, x, 0.3, 0.8, 0, subsample=idx)
    batch, _ = _run(dreg, x[idx], 0.3, 0.8, 0)  # the same 10 points, no subsampling: the same draws
    renyi, _ = _run(plain, x, 0.3, 0.8, 0, subsample=idx)
    assert math.isclose(scaled, 4 * batch, rel_tol=1e-6)
    assert not math.isclose(renyi, scaled, rel_tol=1e-3)


def test_random_mini_batches_are_replayed_on_the_same_points():
    """Guide at each point's exact posterior N(x_n / 2, 1/sqrt(2)) with random mini-batches (subsample_size=10 of
    40): log w_n = log p(x_n) for every draw, so the DReG guide gradient is zero (float32: 1e-5) only if the
    replayed guide and model take the mini-batch that was drawn, and the loss is -(N/B) sum_batch log p(x_n)."""
    x = torch.linspace(-2.0, 2.0, 40)
    for seed in range(3):
        loss, grads = _run(_pair(7)[0], x, x / 2, 0.5**0.5, seed, subsample_size=10)
        assert grads["m"].abs().max() < 1e-5 and grads["s"].abs().max() < 1e-5
        batch = grads["mu"] != 0  # sum_i w~_in (mu_n - z_in): nonzero (almost surely) exactly on the batch
        assert int(batch.sum()) == 10
        log_p = dist.Normal(0.0, 2.0**0.5).log_prob(x[batch])
        assert math.isclose(loss, -4 * float(log_p.sum()), rel_tol=1e-5)


@pytest.fixture(scope="module")
def replicates():
    """R replicates of both estimators on the same draws, x = 1 at mu = 0, guide N(0.2, 1) (posterior
    N(0.5, 0.71))."""
    x = torch.ones(R)
    dreg, plain = _pair()
    return _run(dreg, x, 0.2, 1.0, 0)[1], _run(plain, x, 0.2, 1.0, 0)[1]


def test_dreg_and_iwae_gradients_have_equal_means(replicates):
    """Both are unbiased for the IWAE-50 gradient: the paired per-replicate difference has mean zero. z-scores
    over R = 4000 replicates, bound 4 (two-sided 6e-5 per parameter under the null)."""
    dreg, plain = replicates
    for name in ("m", "s"):
        diff = dreg[name] - plain[name]
        z = diff.mean() / (diff.std() / math.sqrt(R))
        assert abs(float(z)) < 4, (name, float(z))


def test_dreg_has_a_lower_guide_gradient_variance_at_k_50(replicates):
    """Var(DReG) / Var(IWAE) of the guide's gradients at k = 50 with q wider than the posterior (sd 1 vs 0.71):
    measured 1.1e-4 (m) and 7.7e-5 (s); asserted below 0.01 (the ratio's relative sd at R = 4000 is a few
    percent, so this leaves a factor 50+). Not so for q much narrower than the posterior: at q = N(-0.5, 0.5),
    where Var(w) is infinite (sd below 0.71 / sqrt(2)), DReG's variance was 1.8x (m) and 7x (s) the plain one's.
    """
    dreg, plain = replicates
    for name in ("m", "s"):
        ratio = float(dreg[name].var() / plain[name].var())
        assert ratio < 0.01, (name, ratio)


def test_model_gradient_and_zero_guide_gradient_at_the_exact_posterior():
    """At q = posterior every log-weight equals log p(x): the DReG guide gradient is exactly zero on every draw
    (float32: 1e-5), the plain IWAE one is not, and E[d/dmu IWAE] = d/dmu log p(x) = (x - mu) / 2 = 0.5 (the loss's gradient: -0.5)
    (mean of R replicates within 4 standard errors)."""
    dreg, plain = _pair()
    posterior_sd = 0.5**0.5
    _, grads = _run(dreg, torch.ones(R), 0.5, posterior_sd, 1)
    _, noisy = _run(plain, torch.ones(R), 0.5, posterior_sd, 1)
    assert grads["m"].abs().max() < 1e-5 and grads["s"].abs().max() < 1e-5
    assert noisy["m"].abs().max() > 0.1
    mu = grads["mu"]
    assert abs(float(mu.mean()) + 0.5) < 4 * float(mu.std()) / math.sqrt(R)


def test_autoguide_with_delta_sites_has_zero_gradient_at_the_exact_posterior():
    """AutoMultivariateNormal (a latent site plus one Delta site per model site) set to the exact posterior of the
    conjugate regression: the loss is -log p(y) on every draw and every guide gradient is zero (float32: 1e-5),
    so the Delta sites' values and log-densities are differentiated correctly."""
    pair = models.get("linear-regression")
    X, y = pair.simulate(seed=0, n=30)
    exact = pair.posterior(X, y)["beta"]
    chol = torch.linalg.cholesky(exact.covariance_matrix)
    with isolated(0, threads=1, params={"params": {}, "constraints": {}}):
        guide = AutoMultivariateNormal(pair.model)
        guide(X, y)
        store = pyro.get_param_store()
        for name, value in (("loc", exact.mean), ("scale", chol.diagonal()),
                            ("scale_tril", chol / chol.diagonal()[:, None])):
            name = f"AutoMultivariateNormal.{name}"
            store[name].unconstrained().data.copy_(transform_to(store._constraints[name]).inv(value))
        loss = TraceDReG_IWAE(num_particles=20, vectorize_particles=True, max_plate_nesting=1).loss_and_grads(
            pair.model, guide, X, y)
        grads = torch.cat([p.unconstrained().grad.reshape(-1) for _, p in store.items()])
    assert math.isclose(loss, -pair.log_evidence(X, y), rel_tol=1e-5)
    assert grads.abs().max() < 1e-5


def _chain_model(x):
    z1 = pyro.sample("z1", dist.Normal(0.0, 1.0))
    z2 = pyro.sample("z2", dist.Normal(z1, 1.0))
    pyro.sample("x", dist.Normal(z2, 1.0), obs=x)


def _chain_guide(x):
    a, b, c = (pyro.param(name, torch.tensor(0.0)) for name in "abc")
    s1 = pyro.param("s1", torch.tensor(1.0), constraint=constraints.positive)
    s2 = pyro.param("s2", torch.tensor(1.0), constraint=constraints.positive)
    z1 = pyro.sample("z1", dist.Normal(a, s1))
    pyro.sample("z2", dist.Normal(b + c * z1, s2))


def test_hierarchical_guide_has_zero_gradient_at_the_exact_posterior():
    """z1 ~ N(0, 1), z2 ~ N(z1, 1), x ~ N(z2, 1) with the guide q(z1) q(z2 | z1) at the exact posterior
    p(z1 | x) = N(x/3, sqrt(2/3)), p(z2 | z1, x) = N((z1 + x)/2, 1/sqrt(2)): every guide gradient is zero
    (float32: 1e-5) only if log q(z2 | z1) is differentiated in z1 too (the guide is replayed on the detached
    draws), and the loss is -log p(x) = -log N(x; 0, sqrt(3))."""
    x = torch.tensor(1.2)
    exact = {"a": x / 3, "b": x / 2, "c": torch.tensor(0.5), "s1": torch.tensor(2 / 3).sqrt(),
             "s2": torch.tensor(0.5).sqrt()}
    with isolated(0, threads=1, params={"params": {}, "constraints": {}}):
        _chain_guide(x)
        store = pyro.get_param_store()
        for name, value in exact.items():
            store[name].unconstrained().data.copy_(transform_to(store._constraints[name]).inv(value))
        loss = _pair(20)[0].loss_and_grads(_chain_model, _chain_guide, x)
        grads = torch.stack([p.unconstrained().grad for _, p in store.items()])
    assert math.isclose(loss, -float(dist.Normal(0.0, 3**0.5).log_prob(x)), rel_tol=1e-5)
    assert grads.abs().max() < 1e-5


def test_vae_networks_get_iwae_and_dreg_gradients():
    """The VAE pair (networks called directly, registered with pyro.module), whole data set per step: the loss
    and the decoder's gradients equal RenyiELBO's on the same draws; the encoder's differ (DReG)."""
    pair = models.get("vae", x_dim=12, z_dim=2, hidden=(8,), batch_size=16, seed=0)
    x = (torch.rand(16, 12, generator=torch.Generator().manual_seed(0)) > 0.5).float()

    def run(elbo):
        with isolated(0, threads=1, params={"params": {}, "constraints": {}}):
            loss = elbo.loss_and_grads(pair.model, pair.guide, x)
            grads = {name: p.grad.clone() for name, p in pyro.get_param_store().named_parameters()}
        pair.zero_grad(set_to_none=True)
        return loss, grads

    dreg, plain = _pair(10)
    (loss, grads), (loss_plain, grads_plain) = run(dreg), run(plain)
    assert math.isclose(loss, loss_plain, rel_tol=1e-6)
    for name in grads:
        same = torch.allclose(grads[name], grads_plain[name], rtol=1e-4, atol=1e-5)
        assert same == name.startswith("decoder"), name


def test_fit_vi_with_iwae_dreg_reaches_the_exact_posterior():
    """fit_vi(objective="iwae-dreg") with AutoNormal on the conjugate normal mean: the IWAE-k optimum over
    Gaussians is the exact posterior (the bound is then tight, and the DReG gradient vanishes there, so the fit
    settles). 300 steps of the fixed schedule: measured loc error 1e-4 (posterior sd 0.28) and sd ratio 0.993."""
    pair = models.get("normal-mean", noise_scale=0.5)
    y = torch.tensor([1.0, 2.0, 0.5])
    fit = vt.fit_vi(pair.model, AutoNormal(pair.model), y, objective="iwae-dreg", num_particles=10, steps=300, lr=0.05,
                    progress=False, seed=0, schedule=vt.Schedule(early_stop=False))
    exact = pair.posterior(y)["mu"]
    loc, scale = fit.params["AutoNormal.locs.mu"], fit.params["AutoNormal.scales.mu"]
    assert abs(float(loc) - float(exact.mean)) < 0.01 and abs(float(scale) / float(exact.stddev) - 1) < 0.02


def test_a_guide_without_rsample_is_refused():
    def discrete_guide(x, subsample=None):
        pyro.sample("z", dist.Bernoulli(0.5).expand([len(x)]).to_event(1))

    with pytest.raises(ModelGuideError, match="reparameterized"):
        TraceDReG_IWAE(num_particles=2).loss(model, discrete_guide, torch.ones(3))
