"""Agreement of posterior draws with a reference: standardized mean error and sd ratio per parameter."""

import numpy as np
import pandas as pd
import torch


def flatten(draws):
    """site -> array (n, *shape) as parameter label -> 1-D array: ``mu``, ``beta[0]``, ``w[0,1]``."""
    out = {}
    for site, values in draws.items():
        values = np.asarray(values)
        if values.ndim == 1:
            out[site] = values
            continue
        for index in np.ndindex(values.shape[1:]):
            out[f"{site}[{','.join(map(str, index))}]"] = values[(slice(None),) + index]
    return out


def exact_moments(posterior):
    """site -> torch Distribution as parameter label -> (mean, sd) of each exact marginal."""
    moments = {}
    for site, d in posterior.items():
        mean = torch.as_tensor(d.mean).detach().numpy()
        sd = torch.as_tensor(d.variance).sqrt().detach().numpy()
        for label, (m, s) in zip(flatten({site: mean[None]}), zip(np.ravel(mean), np.ravel(sd))):
            moments[label] = (float(m), float(s))
    return moments


def moment_agreement(draws, reference):
    """Per parameter: |mean - ref_mean| / ref_sd (standardized mean error) and sd / ref_sd (sd ratio).

    ``draws``: label -> 1-D array (see :func:`flatten`); ``reference``: label -> (mean, sd).
    """
    rows = []
    for label, (ref_mean, ref_sd) in reference.items():
        values = draws[label]
        mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
        rows.append(
            {
                "parameter": label,
                "mean": mean,
                "sd": sd,
                "ref_mean": ref_mean,
                "ref_sd": ref_sd,
                "std_mean_error": abs(mean - ref_mean) / ref_sd,
                "sd_ratio": sd / ref_sd,
            }
        )
    return pd.DataFrame(rows)
