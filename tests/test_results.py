"""Saved results: VI and MCMC results written with .save(folder) read back identically with vt.load_result."""

import numpy as np
import pytest
import torch

import vi_toolkit as vt


def test_vi_result_roundtrip(nm_fit8, tmp_path):
    folder = nm_fit8.save(tmp_path / "vi")
    loaded = vt.load_result(folder)
    assert loaded.info["method"] == "vi" and loaded.metrics["method"] == "vi"
    saved = nm_fit8.to_inference_data()  # what save() wrote: n=4000, seed=0 (draws are seeded, so reproducible)
    np.testing.assert_array_equal(loaded.draws()["mu"], saved.posterior["mu"].values.reshape(-1))
    np.testing.assert_array_equal(loaded.to_inference_data().posterior["mu"].values, saved.posterior["mu"].values)
    np.testing.assert_array_equal(loaded.losses, nm_fit8.losses)
    assert loaded.info["steps_run"] == nm_fit8.info["steps_run"]
    for name, value in nm_fit8.params.items():
        assert torch.equal(loaded.params[name], value), name


def test_mcmc_result_roundtrip(nm_mcmc, tmp_path):
    folder = nm_mcmc.save(tmp_path / "mcmc")
    loaded = vt.load_result(folder)
    assert loaded.info["method"] == "nuts"
    assert loaded.losses is None and loaded.log_weights() is None
    assert int(loaded.to_inference_data().sample_stats["diverging"].sum()) == nm_mcmc.divergences
    np.testing.assert_array_equal(loaded.draws()["mu"], nm_mcmc.draws()["mu"])
    assert dict(loaded.to_inference_data().posterior.sizes) == {"chain": 2, "draw": 2000}


def test_save_refuses_to_overwrite_unless_asked(nm_fit8, tmp_path):
    nm_fit8.save(tmp_path / "vi")
    with pytest.raises(vt.RunFolderError, match="overwrite=True"):
        nm_fit8.save(tmp_path / "vi")
    nm_fit8.save(tmp_path / "vi", overwrite=True)


def test_params_file_with_a_pickled_payload_runs_no_code(nm_fit8, tmp_path):
    """A crafted params.pt whose object runs code when unpickled is refused before any code runs."""
    folder = nm_fit8.save(tmp_path / "vi")
    marker = tmp_path / "ran"
    torch.save({"x": _Payload(str(marker))}, folder / "params.pt")
    with pytest.raises(vt.RunFolderError, match="params.pt"):
        vt.load_result(folder).params
    assert not marker.exists()


def test_corrupt_metrics_raise_a_run_folder_error(nm_fit8, tmp_path):
    folder = nm_fit8.save(tmp_path / "vi")
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(vt.RunFolderError, match="corrupt"):
        vt.load_result(folder)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_corrupt_posterior_raises_a_run_folder_error(nm_fit8, tmp_path):
    folder = nm_fit8.save(tmp_path / "vi")
    (folder / "posterior.nc").write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(vt.RunFolderError, match="posterior.nc"):
        vt.load_result(folder)
