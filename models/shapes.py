"""Images from known factors, and how well a code separates them: a square on a small canvas (x, y position and
side length drawn at random), and the mutual information gap (MIG, Chen et al. 2018) of a code against the
factors.

    from vi_toolkit.models.shapes import squares, mig
    x, factors = squares(2000, seed=0)          # x (2000, 256) binary images, factors (2000, 3): x, y, side
    score = mig(codes, factors)                  # codes (2000, L), e.g. encoder means
"""

import numpy as np
import torch

from vi_toolkit.validate import whole

FACTORS = ("x", "y", "side")


def squares(n, size=16, sides=(3, 4, 5, 6), seed=0):
    """``n`` binary images (n, size*size), each a filled square of a side drawn from ``sides`` at a top-left
    corner (x, y) drawn uniformly among the positions where it fits; the factors (n, 3) as integers x, y, side."""
    n, size = whole("n", n), whole("size", size)
    rng = np.random.default_rng(seed)
    side = rng.choice(sides, n)
    x, y = (rng.integers(0, size - side + 1) for _ in range(2))
    rows, cols = np.arange(size)[None, :, None], np.arange(size)[None, None, :]
    img = ((rows >= y[:, None, None]) & (rows < (y + side)[:, None, None])
           & (cols >= x[:, None, None]) & (cols < (x + side)[:, None, None]))
    images = torch.tensor(img.reshape(n, -1), dtype=torch.get_default_dtype())
    return images, np.stack([x, y, side], 1)


def discretize(codes, bins=20):
    """Each column of ``codes`` (N, L) cut into ``bins`` equal-width bins over its range: integer array (N, L)."""
    codes = np.asarray(codes, dtype=float)
    return np.stack([np.digitize(c, np.histogram_bin_edges(c, bins)[1:-1]) for c in codes.T], 1)


def mutual_information(codes, factors, bins=20):
    """I(z_j; v_k) in nats for each latent j (discretized into ``bins``) and factor k: array (L, K)."""
    from sklearn.metrics import mutual_info_score

    z = discretize(codes, bins)
    factors = np.asarray(factors)
    return np.array([[mutual_info_score(factors[:, k], z[:, j]) for k in range(factors.shape[1])]
                     for j in range(z.shape[1])])


def mig(codes, factors, bins=20):
    """MIG = (1/K) sum_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), z_(1), z_(2) the two latents most informative
    about factor v_k: 1 when each factor lives in one latent alone, 0 when it is spread evenly over two."""
    from sklearn.metrics import mutual_info_score

    mi = np.sort(mutual_information(codes, factors, bins), axis=0)[::-1]
    factors = np.asarray(factors)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    return float(np.mean((mi[0] - mi[1]) / entropy))
