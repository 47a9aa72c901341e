"""VQ-VAE (van den Oord et al. 2017): a deterministic encoder whose outputs are snapped to the nearest entries of
a learned codebook, trained with the straight-through estimator, and a prior over the codes fitted afterwards.

    vq = VQVAE(x_dim=64, positions=4, code_dim=4, codebook=16, seed=0)
    losses = vq.fit(x_train, steps=2000, seed=0)          # Adam on its own random stream
    vq.fit_prior(x_train)                                  # a categorical over codes per position
    images = vq.sample(100, seed=0)

The encoder gives ``positions`` vectors z_e of ``code_dim`` each; each is replaced by its nearest codebook entry
z_q. The loss per image is ||x - decoder(z_q)||^2 (a Gaussian decoder with a fixed scale, up to constants) +
||sg[z_e] - z_q||^2 (the codebook loss: entries move to the encodings) + ``commitment`` ||z_e - sg[z_q]||^2 (the
encoder commits to its entries), sg = stop-gradient. The straight-through estimator passes the decoder's
gradient at z_q to z_e unchanged: the decoder reads z_e + sg[z_q - z_e], whose value is z_q. The prior is
fitted afterwards to the training codes: an independent categorical per position (with add-one smoothing),
where the paper fits an autoregressive one.
"""

import torch
from torch import nn

from vi_toolkit.isolation import isolated
from vi_toolkit.models.vae import mlp
from vi_toolkit.validate import positive, whole


class VQVAE(nn.Module):
    """Encoder MLP -> ``positions`` x ``code_dim`` -> nearest of ``codebook`` entries -> decoder MLP."""

    def __init__(self, x_dim, positions=4, code_dim=4, codebook=16, hidden=(64, 64), activation="tanh",
                 commitment=0.25, seed=0):
        super().__init__()
        self.x_dim, self.positions = whole("x_dim", x_dim), whole("positions", positions)
        self.code_dim, self.size = whole("code_dim", code_dim), whole("codebook", codebook)
        self.commitment = positive("commitment", commitment)
        with isolated(seed):
            self.encoder = mlp((x_dim, *hidden, positions * code_dim), activation)
            self.decoder = mlp((positions * code_dim, *hidden[::-1], x_dim), activation)
            self.codebook = nn.Parameter(torch.randn(codebook, code_dim))
        self.prior_probs = torch.full((positions, codebook), 1.0 / codebook)

    def encode(self, x):
        """z_e (B, positions, code_dim)."""
        return self.encoder(x).reshape(len(x), self.positions, self.code_dim)

    def nearest(self, z_e):
        """Index of the codebook entry nearest to each z_e (Euclidean): (B, positions)."""
        return torch.cdist(z_e, self.codebook.expand(len(z_e), -1, -1)).argmin(-1)

    def loss(self, x):
        """Mean over rows of ||x - dec(z_st)||^2 + ||sg[z_e] - z_q||^2 + commitment ||z_e - sg[z_q]||^2, where
        z_st = z_e + sg[z_q - z_e] (straight-through): (total, reconstruction term)."""
        z_e = self.encode(x)
        z_q = self.codebook[self.nearest(z_e.detach())]
        z_st = z_e + (z_q - z_e).detach()
        recon = ((x - self.decoder(z_st.flatten(1))) ** 2).sum(-1).mean()
        codebook = ((z_e.detach() - z_q) ** 2).sum((-2, -1)).mean()
        commit = ((z_e - z_q.detach()) ** 2).sum((-2, -1)).mean()
        return recon + codebook + self.commitment * commit, recon

    def fit(self, x, steps=2000, batch_size=32, lr=3e-3, seed=0):
        """Adam on mini-batches of ``batch_size`` rows drawn on a private stream from ``seed``: the losses."""
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        losses = []
        with isolated(seed):
            for _ in range(whole("steps", steps)):
                total, _ = self.loss(x[torch.randint(len(x), (min(batch_size, len(x)),))])
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                losses.append(float(total.detach()))
        return torch.tensor(losses)

    @torch.no_grad()
    def codes(self, x):
        """The code index per row and position: (N, positions)."""
        return self.nearest(self.encode(x))

    @torch.no_grad()
    def fit_prior(self, x):
        """p(code at position p = k) = (count + 1) / (N + K) over the codes of ``x``."""
        codes = self.codes(x)
        counts = torch.stack([torch.bincount(codes[:, p], minlength=self.size) for p in range(self.positions)])
        self.prior_probs = (counts + 1.0) / (len(x) + self.size)
        return self.prior_probs

    @torch.no_grad()
    def decode_codes(self, codes):
        """Decoder output at the codebook entries ``codes`` (N, positions)."""
        return self.decoder(self.codebook[codes].flatten(1))

    @torch.no_grad()
    def reconstruct(self, x):
        return self.decode_codes(self.codes(x))

    @torch.no_grad()
    def sample(self, n, seed=0):
        """``n`` images decoded from codes drawn from the fitted prior, on a private stream from ``seed``."""
        with isolated(seed):
            codes = torch.stack([torch.multinomial(p, n, replacement=True) for p in self.prior_probs], 1)
        return self.decode_codes(codes)


def perplexity(codes, size):
    """exp(entropy of the empirical code frequencies) per position: K for uniform use of K entries, 1 for one."""
    freq = torch.stack([torch.bincount(c, minlength=size) for c in codes.T]).double() / len(codes)
    return torch.exp(-(freq * torch.log(freq.clamp_min(1e-300))).sum(-1))
