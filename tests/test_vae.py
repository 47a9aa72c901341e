"""VAE pair, per-data-point bounds and image data: estimators against each other and against exact answers."""

import copy
import gzip
import math
import struct

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit import images, iwae
from vi_toolkit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits_vae():
    """A small Bernoulli VAE trained briefly on dynamically binarized digits, and 100 binarized test images."""
    data = images.load("digits")
    pair = models.get("vae", x_dim=64, z_dim=4, hidden=(32,), binarize=True, batch_size=100)
    fit = vt.fit_vi(pair.model, pair.guide, pair.prepare(data.train_x), objective="elbo-plain", steps=400,
                    lr=3e-3, jit=False, progress=False, seed=0, schedule=vt.CONSTANT)
    return fit.model.__self__, images.binarize(data.test_x[:100], seed=1)


def _repeated_loss(elbo, pair, x, repeats):
    """Mean and standard error of ``repeats`` independent estimates of Pyro's loss, per data point."""
    values = torch.tensor([elbo.loss(pair.model, pair.guide, x) for _ in range(repeats)]) / len(x)
    return float(values.mean()), float(values.std() / math.sqrt(repeats))


def test_analytic_and_monte_carlo_kl_give_the_same_elbo(digits_vae):
    """Trace_ELBO (Monte Carlo KL), TraceMeanField_ELBO (analytic KL) and the pair's own log-weights estimate
    the same ELBO per image; each mean has its standard error from independent repeats, and the estimates must
    agree within 4 combined standard errors. (The analytic KL is not the lower-variance one here: for a fitted
    q the Monte Carlo terms log p(z) - log q(z|x) cancel much of the reconstruction term's noise.)"""
    vae, x = digits_vae
    vae = copy.deepcopy(vae)
    vae.batch_size, vae.binarize = len(x), False  # the whole (fixed-binarized) test batch, no subsampling
    pyro.set_rng_seed(0)
    options = dict(num_particles=50, vectorize_particles=True, max_plate_nesting=1)
    mc, mc_se = _repeated_loss(Trace_ELBO(**options), vae, x, 20)
    analytic, an_se = _repeated_loss(TraceMeanField_ELBO(**options), vae, x, 20)
    with torch.no_grad():
        per_draw = -vae.log_weights(x, 1000).mean(1)  # 1000 independent one-draw estimates of -ELBO per image
    direct, direct_se = float(per_draw.mean()), float(per_draw.std() / math.sqrt(1000))
    assert abs(mc - analytic) < 4 * math.hypot(mc_se, an_se)
    assert abs(direct - analytic) < 4 * math.hypot(an_se, direct_se)


def test_iwae_is_non_decreasing_in_k(digits_vae):
    """ELBO <= IWAE-10 <= IWAE-100 <= IWAE-1000 per data point, checked on the paired per-point differences:
    each mean difference must exceed -3 standard errors (it is >= 0 in expectation), and the bound must
    tighten measurably between k=1 and k=1000."""
    vae, x = digits_vae
    curve = {k: iwae.iwae(vae.log_weights, x, k, seed=k) for k in (1, 10, 100, 1000)}
    elbo = iwae.elbo(vae.log_weights, x, num_samples=1000)
    ks = sorted(curve)
    for lo, hi in zip(ks, ks[1:]):
        diff = curve[hi] - curve[lo]
        assert float(diff.mean()) > -3 * float(diff.std() / math.sqrt(len(diff)))
    gain = curve[1000] - elbo
    assert float(gain.mean()) > 5 * float(gain.std() / math.sqrt(len(gain)))
    # IWAE-1 is a one-sample estimate of the ELBO
    diff = curve[1] - elbo
    assert abs(float(diff.mean())) < 3 * float(diff.std() / math.sqrt(len(diff)))


def test_iwae_in_bounded_chunks_equals_one_logsumexp():
    """IWAE-k evaluated in chunks of 7 particles (max_draws=21 over batches of 3 rows) equals the direct
    log (1/k) sum_i w_i over all k = 50 log-weights, here log w_{n,i} = sin(i + n) * 10 (no randomness)."""
    drawn = [0]

    def log_weights(rows, n):
        i = torch.arange(drawn[0], drawn[0] + n, dtype=torch.float64)[:, None]
        drawn[0] = (drawn[0] + n) % 50  # a new batch of rows starts again at particle 0
        return torch.sin(i + rows[:, 0]) * 10

    x = torch.arange(5, dtype=torch.float64)[:, None]
    chunked = iwae.iwae(log_weights, x, 50, batch_size=3, max_draws=21)
    direct = torch.logsumexp(torch.sin(torch.arange(50.0, dtype=torch.float64)[:, None] + x[:, 0]) * 10, 0) - math.log(50)
    torch.testing.assert_close(chunked, direct)


def test_renyi_elbo_alpha_0_is_the_sum_of_per_image_iwae_bounds(digits_vae):
    """Pyro's RenyiELBO (alpha=0, k=10 particles) on a batch of 1 and of 20 images estimates the sum over the
    images of their own IWAE-10 bounds (it takes the logsumexp over particles per data-plate entry): the mean of
    100 repeats of each agrees within 4 combined standard errors."""
    vae, x = digits_vae
    vae = copy.deepcopy(vae)
    vae.binarize = False
    renyi = RenyiELBO(alpha=0.0, num_particles=10, vectorize_particles=True, max_plate_nesting=1)
    pyro.set_rng_seed(0)
    for rows in (x[:1], x[:20]):
        vae.batch_size = len(rows)
        losses = torch.tensor([renyi.loss(vae.model, vae.guide, rows) for _ in range(100)])
        per_image = torch.stack([iwae.iwae(vae.log_weights, rows, 10, seed=s) for s in range(100)]).sum(1)
        se = math.hypot(float(losses.std()), float(per_image.std())) / math.sqrt(100)
        assert abs(float(-losses.mean() - per_image.mean())) < 4 * se


def test_gaussian_decoder_learns_the_noise_variance_of_ppca():
    """Data from probabilistic PCA, x = W z + mu + sigma eps (D=5, L=2, sigma^2=0.09, N=2000). A linear VAE
    with a learned shared variance recovers sigma^2 (MLE standard error ~2%, tolerance 12%); its exact
    log-likelihood, log N(x; b, V V^T + s^2 I) from the decoder's weights, is close to the generating model's
    (within 0.05 nats per point, the MLE's excess over the truth is ~(#params)/(2N) = 0.005); the trained ELBO
    lies below it and IWAE-100 lies closer to it (paired per-point differences, 3 standard errors). The gap
    is small (~0.002 nats; measured 8 standard errors): a linear VAE can rotate its latents until the exact
    posterior is diagonal, so its ELBO becomes nearly tight (Lucas et al. 2019)."""
    D, L, N, sigma = 5, 2, 2000, 0.3
    g = torch.Generator().manual_seed(0)
    W, mu = torch.randn(D, L, generator=g), torch.randn(D, generator=g)
    x = torch.randn(N, L, generator=g) @ W.T + mu + sigma * torch.randn(N, D, generator=g)
    true = torch.distributions.MultivariateNormal(mu, W @ W.T + sigma**2 * torch.eye(D)).log_prob(x)

    pair = models.get("vae", x_dim=D, z_dim=L, hidden=(), decoder="gaussian-learned",
                      decoder_variance="shared", decoder_scale=1.0, batch_size=500)
    fit = vt.fit_vi(pair.model, pair.guide, pair.prepare(x), objective="elbo-analytic", steps=1500, lr=0.02,
                    jit=False, progress=False, seed=0)
    vae = fit.model.__self__
    linear = vae.decoder.net[0]
    variance = float(vae.decoder.log_scale.detach().exp() ** 2)
    assert abs(variance / sigma**2 - 1) < 0.12

    with torch.no_grad():
        cov = linear.weight @ linear.weight.T + variance * torch.eye(D)
        exact = torch.distributions.MultivariateNormal(linear.bias, cov).log_prob(x)
    assert torch.allclose(vae.exact_log_likelihood(x), exact)
    assert abs(float((exact - true).mean())) < 0.05

    x_eval, exact_eval = x[:500], exact[:500].double()
    gap_elbo = exact_eval - iwae.elbo(vae.log_weights, x_eval, num_samples=200)
    gap_iwae = exact_eval - iwae.iwae(vae.log_weights, x_eval, 100)
    se = lambda t: float(t.std() / math.sqrt(len(t)))  # noqa: E731
    assert float(gap_elbo.mean()) > 3 * se(gap_elbo)
    assert float(gap_iwae.mean()) > -3 * se(gap_iwae)  # IWAE is a lower bound too
    closer = gap_elbo - gap_iwae
    assert float(closer.mean()) > 3 * se(closer)


def test_a_fit_resumed_from_its_checkpoint_has_the_saved_weights(tmp_path):
    """A second fit_vi call with the same checkpoint path restores the finished fit: the networks it returns
    hold exactly the first fit's weights (not a fresh initialization)."""
    x = images.binarize(images.load("digits").train_x[:200], seed=0)
    runs = []
    for _ in range(2):
        pair = models.get("vae", x_dim=64, z_dim=2, hidden=(8,), batch_size=50)
        fit = vt.fit_vi(pair.model, pair.guide, x, objective="elbo-plain", steps=20, lr=0.01, jit=False,
                        progress=False, checkpoint=str(tmp_path / "fit.pt"), checkpoint_every=4)
        runs.append(fit.model.__self__.state_dict())
    initial = models.get("vae", x_dim=64, z_dim=2, hidden=(8,)).state_dict()
    for name, value in runs[0].items():
        assert torch.equal(value, runs[1][name])
        assert not torch.equal(value, initial[name])


def test_kl_warmup_ramps_the_weight_of_the_latent_site_in_model_and_guide():
    """warmup_steps=4, beta=2: the z sites of guide and model carry scale beta * min(1, (t+1)/4) at model call
    t (times N/B = 1 here), so the KL term's weight is 0.5, 1, 1.5, 2, 2."""
    from pyro import poutine

    pair = models.get("vae", x_dim=4, z_dim=2, hidden=(), beta=2.0, warmup_steps=4, batch_size=3)
    x = torch.ones(3, 4)
    scales = []
    with pyro.get_param_store().scope():
        for _ in range(5):
            guide = poutine.trace(pair.guide).get_trace(x)
            model = poutine.trace(poutine.replay(pair.model, trace=guide)).get_trace(x)
            assert guide.nodes["z"]["scale"] == model.nodes["z"]["scale"]
            scales.append(float(model.nodes["z"]["scale"]))
    assert scales == [0.5, 1.0, 1.5, 2.0, 2.0]
    # a compiled trace would freeze the weight: the model refuses the JIT, and fit_vi falls back to the plain ELBO
    pair = models.get("vae", x_dim=4, z_dim=2, hidden=(), beta=2.0, warmup_steps=4, batch_size=3)
    fit = vt.fit_vi(pair.model, pair.guide, x, objective="elbo-plain", steps=5, progress=False)
    assert fit.info["jit"] is False


def _write_idx(path, array, gz):
    """An IDX file (big-endian header: magic 0x08 dtype code, number of dims, then the sizes) of uint8 ``array``."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(str(path) + (".gz" if gz else ""), "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_reads_mnist_format_idx_files(tmp_path, name):
    """Tiny IDX files (6 training and 4 test images of 5x7 pixels), gzipped, laid out by prepare_root and
    read through torchvision: pixels / 255, labels and shapes come back exactly."""
    rng = np.random.default_rng(0)
    source = tmp_path / "source"
    source.mkdir()
    arrays = {}
    for split, n in (("train", 6), ("t10k", 4)):
        arrays[split] = (rng.integers(0, 256, (n, 5, 7)), rng.integers(0, 10, n))
        _write_idx(source / f"{split}-images-idx3-ubyte", arrays[split][0], gz=True)
        _write_idx(source / f"{split}-labels-idx1-ubyte", arrays[split][1], gz=True)
    root = images.prepare_root(source, tmp_path / "root", name=name)
    data = images.load(name, root=root)
    assert data.shape == (5, 7) and data.dim == 35
    np.testing.assert_allclose(data.train_x.numpy(), arrays["train"][0].reshape(6, 35) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(data.test_x.numpy(), arrays["t10k"][0].reshape(4, 35) / 255.0, rtol=1e-6)
    assert data.train_y.tolist() == arrays["train"][1].tolist() and data.test_y.tolist() == arrays["t10k"][1].tolist()


def test_missing_files_and_bad_settings_raise_typed_errors(tmp_path):
    with pytest.raises(DataError, match="MNIST/raw"):
        images.load("mnist", root=tmp_path)
    with pytest.raises(DataError, match="binary pixels"):
        models.get("vae", x_dim=4).prepare(torch.full((3, 4), 0.5))
    with pytest.raises(ConfigError, match="decoder"):
        models.get("vae", x_dim=4, decoder="poisson")
    with pytest.raises(ConfigError, match="k must be"):
        iwae.iwae(lambda x, n: torch.zeros(n, len(x)), torch.zeros(2, 4), 0)
    with pytest.raises(ConfigError, match="linear Gaussian decoder"):
        models.get("vae", x_dim=4).exact_log_likelihood(torch.zeros(2, 4))


def test_mini_batched_pairs_run_their_particles_vectorized():
    """A model that draws a new mini-batch on every call (the VAE, and one written by hand with
    ``pyro.plate(subsample_size=)``) still broadcasts over particles: the numeric check compares the vectorized
    and the looped log joint on one mini-batch, not on two different ones."""
    from vi_toolkit.problem import Problem

    pair = models.get("vae", x_dim=4, z_dim=2, hidden=(), decoder="gaussian", batch_size=16, seed=0)
    x = torch.randn(200, 4)

    def regression(x, y):
        beta = pyro.sample("beta", pyro.distributions.Normal(0.0, 1.0).expand([4]).to_event(1))
        with pyro.plate("data", len(y), subsample_size=16) as idx:
            pyro.sample("y", pyro.distributions.Normal((x[idx] * beta).sum(-1), 1.0), obs=y[idx])

    def full_batch(x, y):
        beta = pyro.sample("beta", pyro.distributions.Normal(0.0, 1.0).expand([4]).to_event(1))
        with pyro.plate("data", len(y)):
            pyro.sample("y", pyro.distributions.Normal((x * beta).sum(-1), 1.0), obs=y)

    vae_problem = Problem.of(pair.model, pair.prepare(x))
    assert vae_problem.broadcasts and vae_problem.subsampled
    assert Problem.of(regression, x, x[:, 0]).broadcasts and Problem.of(regression, x, x[:, 0]).subsampled
    assert not Problem.of(full_batch, x, x[:, 0]).subsampled  # a plate without subsample_size draws no batch
    fit = vt.fit_vi(pair.model, pair.guide, pair.prepare(x), num_particles=4, steps=2, progress=False, seed=0)
    assert fit.info["vectorized_particles"]
    # num_particles=None: 1 on a mini-batched model (its noise is the batch's), 32 on a small full-batch one
    assert vt.fit_vi(pair.model, pair.guide, pair.prepare(x), steps=2, progress=False).info["num_particles"] == 1
    assert vt.fit_vi(full_batch, "normal", x, x[:, 0], steps=2, progress=False).info["num_particles"] == 32
