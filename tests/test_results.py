"""Saved results: VI and MCMC results written with .save(folder) read back identically with vt.load_result."""

import numpy as np
import torch

import vi_toolkit as vt


def test_vi_result_roundtrip(nm_fit8, tmp_path):
    folder = nm_fit8.save(tmp_path / "vi")
    loaded = vt.load_result(folder)
    assert loaded.kind == "vi" and loaded.metrics["kind"] == "vi"
    saved = nm_fit8.to_inference_data()  # what save() wrote: n=1000, seed=0 (draws are seeded, so reproducible)
    np.testing.assert_array_equal(loaded.draws()["mu"], saved.posterior["mu"].values.reshape(-1))
    np.testing.assert_array_equal(loaded.to_inference_data().posterior["mu"].values, saved.posterior["mu"].values)
    np.testing.assert_array_equal(loaded.losses, nm_fit8.losses)
    assert loaded.info["steps_run"] == nm_fit8.info["steps_run"]
    for name, value in nm_fit8.params.items():
        assert torch.equal(loaded.params[name], value), name


def test_mcmc_result_roundtrip(nm_mcmc, tmp_path):
    folder = nm_mcmc.save(tmp_path / "mcmc")
    loaded = vt.load_result(folder)
    assert loaded.kind == "mcmc"
    assert loaded.losses is None
    assert loaded.metrics["divergences"] == nm_mcmc.divergences
    np.testing.assert_array_equal(loaded.draws()["mu"], nm_mcmc.draws()["mu"])
    assert dict(loaded.to_inference_data().posterior.sizes) == {"chain": 2, "draw": 2000}
