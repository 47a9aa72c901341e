"""Variational autoencoder: model p(z) p(x|z) with an MLP decoder, amortized guide q(z|x) with an MLP encoder.

    pair = models.get("vae", x_dim=64, z_dim=8, decoder="bernoulli", binarize=True)
    fit = vt.fit_vi(pair.model, pair.guide, x_train, objective="elbo-plain", steps=3000, lr=1e-3)
    vae = fit.model.__self__            # fit_vi trains its own copy of the pair: take the fitted networks from it

Both ``model(x)`` and ``guide(x)`` take the whole training set ``x`` (N, x_dim) and draw a mini-batch of
``batch_size`` rows with ``pyro.plate("data", N, subsample_size=batch_size)``, which scales the batch's
log-probabilities by N / batch_size. The networks are registered with ``pyro.module`` (and take their weights from
the parameter store, so a fit resumed from a checkpoint continues with the saved weights) and called directly, so
``"elbo-plain"`` (Trace_ELBO) gives them the full reparameterized gradient; ``"elbo-analytic"`` computes
KL(q(z|x) || p(z)) in closed form; ``"renyi"`` with alpha=0 and k particles is the IWAE-k objective. (Not
``"elbo"`` for now: its sticking-the-landing replay of the guide draws new plate indices, so log q(z|x) is taken
on another mini-batch.) With ``warmup_steps`` the model refuses to be JIT-traced (the counter would freeze), so
fit_vi trains it with the plain ELBO.

Decoders: ``bernoulli`` (binary pixels), ``bce`` (the binary cross-entropy on pixels in [0, 1], as commonly
used: the continuous Bernoulli without its normalizer, so *not* a density; :meth:`VAE.as_density` gives the
density it stands for), ``cbernoulli`` (continuous Bernoulli, pixels in [0, 1]), ``gaussian`` (fixed scale
``decoder_scale``: the squared-error loss) and ``gaussian-learned`` (a learned scale per pixel, or one ``shared``
by all pixels of an image). Gaussian decoders have a linear mean.

Posterior collapse: :meth:`VAE.latent_usage` measures each latent unit's activity A_d = Cov_x(E_q[z_d | x])
(a unit is active when A_d > 0.01, Burda et al. 2016) and its mean KL(q(z_d|x) || p(z_d)); a VAE with no
active unit ignores its input and decodes (nearly) the same image for every x.

``beta`` weights the KL term (beta-VAE); ``warmup_steps`` > 0 ramps that weight linearly from beta/warmup_steps
to beta over the first ``warmup_steps`` model calls. The weight is a ``poutine.scale`` on the ``z`` site of
model *and* guide (so the ELBO is E[log p(x|z)] - weight * KL). The call counter lives in the parameter store
as ``vae_step`` so that fit_vi's checkpoints carry it; during the warm-up the reported loss is not the ELBO.

``binarize=True`` is dynamic binarization: each mini-batch is redrawn as x_b ~ Bernoulli(x). The guide draws
it and the model, replayed on the guide's plate indices (the same tensor object), reuses that draw.
"""

import copy
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.params import param_with_module_name
from torch import nn

from vi_toolkit.models import register
from vi_toolkit.errors import ConfigError, DataError
from vi_toolkit.isolation import isolated
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import positive, whole

DECODERS = ("bernoulli", "bce", "cbernoulli", "gaussian", "gaussian-learned")
ACTIVE_THRESHOLD = 0.01  # a latent unit is active when Cov_x(E_q[z_d|x]) exceeds this (Burda et al. 2016)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus}
STEP_PARAM = "vae_step"


def mlp(sizes, activation):
    """Linear layers between consecutive ``sizes`` with ``activation`` after each but the last."""
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _register(name, module):
    """``pyro.module(name, module)``, then point the module at the parameter store's tensors where they differ (a
    fit resumed from a checkpoint), so the optimizer's updates reach the network. Unlike
    ``update_module_params=True`` this never writes back a value detached by a handler (such as the
    sticking-the-landing replay), which would cut the network off from its gradients. A stored tensor of another
    shape belongs to another network registered under the same name and is left alone."""
    pyro.module(name, module)
    store = pyro.get_param_store()
    for path, param in list(module.named_parameters()):
        stored = store[param_with_module_name(name, path)]
        if stored is not param and stored.requires_grad and stored.shape == param.shape:
            owner, _, attr = path.rpartition(".")
            module.get_submodule(owner)._parameters[attr] = stored


class Encoder(nn.Module):
    """q(z|x) = Normal(loc(x), scale(x)), scale = softplus(.) + 1e-4 learned, or a fixed constant; or (``full``)
    MultivariateNormal(loc(x), L(x) L(x)^T), L lower triangular with diagonal softplus(.) + 1e-4: then the
    second output is L."""

    def __init__(self, x_dim, z_dim, hidden, activation, fixed_scale=None, full=False):
        super().__init__()
        self.z_dim = z_dim
        self.fixed_scale = fixed_scale
        self.full = full
        outputs = z_dim if fixed_scale else 2 * z_dim + (z_dim * (z_dim - 1) // 2 if full else 0)
        self.net = mlp((x_dim, *hidden, outputs), activation)

    def forward(self, x):
        out = self.net(x)
        if self.fixed_scale:
            return out, torch.full_like(out, self.fixed_scale)
        loc, raw, lower = out.split([self.z_dim, self.z_dim, out.shape[-1] - 2 * self.z_dim], dim=-1)
        scale = nn.functional.softplus(raw) + 1e-4
        if not self.full:
            return loc, scale
        rows, cols = torch.tril_indices(self.z_dim, self.z_dim, offset=-1)
        tril = torch.diag_embed(scale)
        tril[..., rows, cols] = lower
        return loc, tril

    def distribution(self, x):
        """q(z|x): event shape (z_dim,), batch shape that of the rows of x."""
        loc, scale = self(x)
        if self.full:
            return dist.MultivariateNormal(loc, scale_tril=scale)
        return dist.Normal(loc, scale).to_event(1)


class CrossEntropy(dist.ContinuousBernoulli):
    """log "p"(x) = x log lambda + (1 - x) log(1 - lambda), x in [0, 1]: minus the binary cross-entropy. The
    continuous Bernoulli's log density without its normalizer log C(lambda) >= log 2, so it integrates to
    1 / C(lambda) <= 1/2 over [0, 1]: a loss, not a density."""

    @property
    def mean(self):
        """lambda, the prediction the cross-entropy is minimized by (not the continuous Bernoulli's mean)."""
        return self.probs

    def log_prob(self, value):
        return super().log_prob(value) - self._cont_bern_log_norm()


@dataclass(frozen=True)
class LatentUsage:
    """Per latent unit d: ``activity`` A_d = Cov_x(E_q[z_d|x]), ``kl`` = mean over x of KL(q(z_d|x) || N(0, 1))
    in nats, ``active`` = A_d > ``threshold``."""

    activity: torch.Tensor
    kl: torch.Tensor
    threshold: float

    @property
    def active(self):
        return self.activity > self.threshold

    @property
    def n_active(self):
        return int(self.active.sum())

    @property
    def status(self):
        """"collapsed" (no active unit), "partly collapsed" (fewer than max(2, K/4) of K) or "ok"."""
        if self.n_active == 0:
            return "collapsed"
        return "partly collapsed" if self.n_active < max(2, len(self.activity) // 4) else "ok"

    def sentence(self):
        """"k of K latent units active (...)", with a warning when few or none are."""
        text = (f"{self.n_active} of {len(self.activity)} latent units active (Cov_x E[z_d|x] > {self.threshold:g}); "
                f"KL per unit {', '.join(f'{v:.2f}' for v in self.kl.tolist())} nats")
        if self.status == "collapsed":
            text += (". WARNING: posterior collapse: no latent unit carries information about x, so every image "
                     "decodes to about the same picture")
        elif self.status == "partly collapsed":
            text += f". WARNING: partial posterior collapse: only {self.n_active} unit(s) carry information about x"
        return text


def _kl_to_standard_normal(q):
    """KL(q || N(0, I)) in closed form for a diagonal Normal or a MultivariateNormal q."""
    if isinstance(q, dist.MultivariateNormal):
        eye = torch.eye(q.event_shape[0])
        return torch.distributions.kl_divergence(q, dist.MultivariateNormal(torch.zeros_like(q.loc), scale_tril=eye))
    return torch.distributions.kl_divergence(q, dist.Normal(torch.zeros_like(q.mean), 1.0).to_event(1))


def gaussian_total_correlation(cov):
    """TC = KL(N(0, S) || prod_d N(0, S_dd)) = (sum_d log S_dd - log det S) / 2: the total correlation of the
    Gaussian with covariance ``cov`` (0 when S is diagonal)."""
    cov = torch.as_tensor(cov)
    return float((torch.log(torch.diagonal(cov)).sum() - torch.logdet(cov)) / 2)


class Decoder(nn.Module):
    """p(x|z) with ``likelihood`` one of :data:`DECODERS`, independent over pixels (event dim 1)."""

    def __init__(self, x_dim, z_dim, hidden, activation, likelihood, scale, variance):
        super().__init__()
        self.likelihood, self.scale = likelihood, scale
        self.net = mlp((z_dim, *hidden, x_dim), activation)
        if likelihood == "gaussian-learned":
            size = x_dim if variance == "pixel" else 1
            self.log_scale = nn.Parameter(torch.full((size,), math.log(scale)))

    def forward(self, z):
        out = self.net(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if self.likelihood == "bce":
            return CrossEntropy(logits=out, validate_args=False).to_event(1)
        if self.likelihood == "cbernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(1)
        scale = self.log_scale.exp() if self.likelihood == "gaussian-learned" else torch.tensor(self.scale)
        return dist.Normal(out, scale.expand(out.shape)).to_event(1)


@register("vae")
class VAE(ModelPair, nn.Module):
    """z_n ~ Normal(0, I_L); x_n | z_n ~ decoder(z_n); guide z_n ~ Normal(enc_loc(x_n), enc_scale(x_n)).

    ``x_dim`` pixels, ``z_dim`` latents, MLP ``hidden`` sizes with ``activation`` (encoder and decoder
    mirrored), ``decoder`` one of :data:`DECODERS` with ``decoder_scale`` (fixed scale, or the initial one when
    learned) and ``decoder_variance`` ("pixel" or "shared"), ``encoder_scale`` None (learned) or a fixed
    positive constant, ``encoder_covariance`` "diagonal" or "full" (a learned lower-triangular scale; KL by
    Monte Carlo or :meth:`kl`, not Pyro's ``elbo-analytic``), ``beta`` and ``warmup_steps`` (see the module docstring), ``batch_size`` rows per
    step, ``binarize`` (dynamic binarization), ``seed`` for the initial weights.
    """

    description = "Variational autoencoder: MLP decoder p(x|z), amortized MLP encoder q(z|x), mini-batches"

    def __init__(self, x_dim, z_dim=8, hidden=(200, 200), activation="tanh", decoder="bernoulli",
                 decoder_scale=0.1, decoder_variance="pixel", encoder_scale=None, encoder_covariance="diagonal",
                 beta=1.0, warmup_steps=0, batch_size=100, binarize=False, seed=0):
        nn.Module.__init__(self)
        self.x_dim, self.z_dim = whole("x_dim", x_dim), whole("z_dim", z_dim)
        hidden = tuple(hidden)
        for size in hidden:
            whole("hidden sizes", size)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if decoder not in DECODERS:
            raise ConfigError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if decoder_variance not in ("pixel", "shared"):
            raise ConfigError(f"decoder_variance must be 'pixel' or 'shared', got {decoder_variance!r}")
        self.likelihood = decoder  # the decoder's family, one of DECODERS
        self.beta = positive("beta", beta)
        self.warmup_steps = whole("warmup_steps", warmup_steps, 0)
        self.batch_size = whole("batch_size", batch_size)
        self.binarize = bool(binarize)
        if self.binarize and decoder != "bernoulli":
            raise ConfigError(f"binarize=True is for the bernoulli decoder, not {decoder!r}")
        fixed = None if encoder_scale is None else positive("encoder_scale", encoder_scale)
        if encoder_covariance not in ("diagonal", "full") or (fixed and encoder_covariance == "full"):
            raise ConfigError(f"encoder_covariance must be 'diagonal' or 'full' (a learned one, without encoder_scale), "
                              f"got {encoder_covariance!r}")
        scale = positive("decoder_scale", decoder_scale)
        with isolated(seed):  # the initial weights come from ``seed``; the caller's stream is left as it was
            self.encoder = Encoder(self.x_dim, self.z_dim, hidden, activation, fixed, encoder_covariance == "full")
            self.decoder = Decoder(self.x_dim, self.z_dim, hidden[::-1], activation, decoder, scale, decoder_variance)
        self._batch = (None, None)  # (plate indices, binarized batch) of the current step

    # --- data -------------------------------------------------------------------------------------------
    def prepare(self, x):
        """``x`` as a float tensor (N, x_dim), checked against the decoder's support."""
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.dim() != 2 or x.shape[1] != self.x_dim or len(x) == 0:
            raise DataError(f"x must have shape (N, {self.x_dim}) with N >= 1, got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError("x holds NaN or infinite values")
        if self.likelihood in ("bernoulli", "bce", "cbernoulli") and (x.min() < 0 or x.max() > 1):
            raise DataError(f"the {self.likelihood} decoder needs pixels in [0, 1]; scale the data first")
        if self.likelihood == "bernoulli" and not self.binarize and not ((x == 0) | (x == 1)).all():
            raise DataError("the bernoulli decoder needs binary pixels: pass binarize=True "
                            "(dynamic binarization) or binarize the data (vi_toolkit.images.binarize)")
        return x

    def _minibatch(self, x, idx):
        """The rows ``idx`` of x, binarized once per set of plate indices when ``binarize``."""
        if not self.binarize:
            return x.index_select(0, idx)
        if self._batch[0] is not idx:
            rows = x.index_select(0, idx)
            self._batch = (idx, torch.bernoulli(rows))
        return self._batch[1]

    def _kl_weight(self, advance):
        """beta * min(1, (t+1) / warmup_steps) at call t (read from the parameter store; advanced by the model)."""
        if not self.warmup_steps:
            return self.beta
        if torch.jit.is_tracing():  # a compiled trace would freeze the weight: fit_vi then uses the plain ELBO
            raise ConfigError("KL warm-up cannot run under a JIT-compiled ELBO; fit with jit=False")
        store = pyro.get_param_store()
        t = int(store[STEP_PARAM]) if STEP_PARAM in store else 0
        if advance:
            store[STEP_PARAM] = torch.tensor(float(t + 1))
        return self.beta * min(1.0, (t + 1) / self.warmup_steps)

    # --- the pair ---------------------------------------------------------------------------------------
    def prior(self):
        return dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1)

    def model(self, x):
        _register("decoder", self.decoder)
        weight = self._kl_weight(advance=True)
        with pyro.plate("data", len(x), subsample_size=min(self.batch_size, len(x))) as idx:
            rows = self._minibatch(x, idx)
            with poutine.scale(scale=weight):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.decoder(z), obs=rows)

    def guide(self, x):
        _register("encoder", self.encoder)
        weight = self._kl_weight(advance=False)
        with pyro.plate("data", len(x), subsample_size=min(self.batch_size, len(x))) as idx:
            q = self.encoder.distribution(self._minibatch(x, idx))
            with poutine.scale(scale=weight):
                pyro.sample("z", q)

    # --- evaluation, on the networks directly -----------------------------------------------------------
    def encode(self, x):
        """q(z|x) for rows x (B, x_dim): batch shape (B,), event shape (z_dim,); a diagonal Normal, or a
        MultivariateNormal for ``encoder_covariance="full"``."""
        return self.encoder.distribution(x)

    def decode(self, z):
        """p(x|z) for latents z (..., z_dim)."""
        return self.decoder(z)

    def log_weights(self, x, n):
        """log w_i = log p(z_i) + log p(x|z_i) - log q(z_i|x), z_i ~ q(z|x), i = 1..n: tensor (n, B)."""
        q = self.encode(x)
        z = q.rsample((n,))
        return self.prior().log_prob(z) + self.decode(z).log_prob(x) - q.log_prob(z)

    def kl(self, x, n=None):
        """KL(q(z|x) || p(z)) per row of x: in closed form (``n`` None), or its Monte Carlo estimate
        mean_i [log q(z_i|x) - log p(z_i)], z_i ~ q(z|x) reparameterized, from ``n`` draws."""
        q = self.encode(x)
        if n is None:
            return _kl_to_standard_normal(q)
        z = q.rsample((n,))
        return (q.log_prob(z) - self.prior().log_prob(z)).mean(0)

    def elbo(self, x, kl="analytic"):
        """One-draw ELBO per row: log p(x|z) - KL(q||p), z ~ q(z|x), with the KL in closed form
        (``kl="analytic"``) or from the same draw z (``kl="monte-carlo"``: log p(z) - log q(z|x))."""
        q = self.encode(x)
        z = q.rsample()
        if kl == "analytic":
            return self.decode(z).log_prob(x) - _kl_to_standard_normal(q)
        if kl == "monte-carlo":
            return self.decode(z).log_prob(x) + self.prior().log_prob(z) - q.log_prob(z)
        raise ConfigError(f"kl must be 'analytic' or 'monte-carlo', got {kl!r}")

    @torch.no_grad()
    def exact_log_likelihood(self, x):
        """log p(x_n) = log N(x_n; b, V V^T + diag(s^2)) per row, exact for a linear-Gaussian decoder
        (``hidden=()`` and a Gaussian decoder: probabilistic PCA), where p(x|z) = N(V z + b, diag(s^2))."""
        if self.likelihood not in ("gaussian", "gaussian-learned") or len(self.decoder.net) != 1:
            raise ConfigError("the exact log-likelihood needs a linear Gaussian decoder: hidden=() and decoder "
                              f"'gaussian' or 'gaussian-learned' (this VAE: {self.likelihood!r}, "
                              f"{len(self.decoder.net) // 2} hidden layer(s))")
        linear = self.decoder.net[0]
        variance = self.decoder(torch.zeros(self.z_dim)).base_dist.scale ** 2
        cov = linear.weight @ linear.weight.T + torch.diag(variance)
        return dist.MultivariateNormal(linear.bias, cov).log_prob(x)

    def mean(self, z):
        """E[x | z], the decoder's mean image(s)."""
        return self.decode(z).mean

    @torch.no_grad()
    def sample(self, n, seed=0, means=True):
        """``n`` images from the model: decoder means at z ~ p(z), or (``means=False``) x ~ p(x|z); drawn on a
        private random stream from ``seed`` (the caller's stream is left as it was)."""
        with isolated(seed):
            p = self.decode(self.prior().sample((n,)))
            return p.mean if means else p.sample()

    @torch.no_grad()
    def reconstruct(self, x):
        """E[x | z = encoder mean of x]."""
        return self.mean(self.encoder(x)[0])

    @torch.no_grad()
    def reconstruction_ratio(self, x, reference):
        """sum_n ||x_n - reconstruct(x_n)||^2 / sum_n ||x_n - reference||^2: the squared reconstruction error
        relative to that of predicting the image ``reference`` (e.g. the training mean) for every x; near 1 for
        a collapsed VAE."""
        return float(((x - self.reconstruct(x)) ** 2).sum() / ((x - reference) ** 2).sum())

    @torch.no_grad()
    def latent_usage(self, x, threshold=ACTIVE_THRESHOLD):
        """A_d = Cov_x(E_q[z_d|x]) and mean_x KL(q(z_d|x) || N(0, 1)) per unit d over the rows of ``x``."""
        q = self.encode(x)
        marginal = dist.Normal(q.mean, q.variance.sqrt())  # q(z_d|x), also for a full-covariance encoder
        kl = torch.distributions.kl_divergence(marginal, dist.Normal(0.0, 1.0)).mean(0)
        return LatentUsage(q.mean.var(0), kl, threshold)

    @torch.no_grad()
    def aggregate_covariance(self, x):
        """Cov of the aggregate posterior q(z) = (1/N) sum_n q(z|x_n): Cov_n(E[z|x_n]) + mean_n Cov(z|x_n)."""
        q = self.encode(x)
        within = q.covariance_matrix if isinstance(q, dist.MultivariateNormal) else torch.diag_embed(q.variance)
        return torch.cov(q.mean.T, correction=0) + within.mean(0)

    def as_density(self):
        """A copy whose decoder is a density on the data: a ``bce`` decoder becomes the continuous Bernoulli
        with the same logits (its normalized form); any other VAE is returned as a copy unchanged."""
        out = copy.deepcopy(self)
        if out.likelihood == "bce":
            out.likelihood = out.decoder.likelihood = "cbernoulli"
        return out


def train(x, *, epochs, lr, seed, objective="elbo-plain", progress=False, checkpoint=None, **options):
    """``VAE(x_dim=x.shape[1], seed=seed, **options)`` fitted to the rows of ``x`` by :func:`vi_toolkit.fit_vi`
    with ``objective`` for ``epochs`` passes of mini-batches of its ``batch_size`` at Adam step size ``lr``,
    every step (a VAE's loss is too noisy for early stopping), checkpointed once per epoch where ``checkpoint``
    names a file: (the trained VAE, the fit)."""
    import vi_toolkit as vt

    vae = VAE(x_dim=x.shape[1], seed=seed, **options)
    per_epoch = math.ceil(len(x) / vae.batch_size)
    fit = vt.fit_vi(vae.model, vae.guide, vae.prepare(x), objective=objective, steps=epochs * per_epoch, lr=lr,
                    seed=seed, progress=progress, schedule=vt.Schedule(early_stop=False), checkpoint=checkpoint,
                    checkpoint_every=per_epoch)
    return fit.model.__self__, fit
