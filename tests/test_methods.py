"""Inference methods by name (``vi_toolkit.methods``): each name runs the method it names with the caller's seed
and options, a lazily named method's module is imported only when it runs, and unknown or absent methods raise
typed errors that say what to do."""

import subprocess
import sys

import numpy as np
import pytest

import vi_toolkit as vt
from vi_toolkit import methods

NAMES = ["normal", "mvn", "lowrank", "iaf", "laplace", "nuts", "pathfinder", "dadvi", "batch-match"]


def test_every_method_has_a_one_line_description_and_is_public():
    assert list(methods.METHODS) == NAMES
    assert all(text and "\n" not in text for text in methods.METHODS.values())
    assert vt.run_method is methods.run_method and vt.METHODS is methods.METHODS


def test_unknown_name_lists_the_methods():
    with pytest.raises(vt.UnknownNameError, match="unknown inference method 'advi'.*normal, mvn.*batch-match"):
        methods.run_method("advi", lambda: None)


def test_importing_methods_loads_neither_torch_nor_pyro():
    code = "import sys, vi_toolkit.methods; print(sorted({'torch', 'pyro'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_autoguide_family_is_fit_vi_with_the_same_seed_and_options(normal_mean):
    """``run_method("normal", ...)`` is ``fit_vi(model, "normal", ...)``: the same fit, bit for bit (same seed,
    same private stream), and it finds the exact posterior N(m, s^2): 4000 draws give the mean to s/sqrt(4000)
    = 0.016 s, and a settled fit's error is below 0.05 s (the fit_vi tests), so 0.15 s is loose."""
    pair, y, exact = normal_mean
    options = dict(steps=300, lr=0.05, seed=3)
    ours = methods.run_method("normal", pair.model, y, **options)
    theirs = vt.fit_vi(pair.model, "normal", y, progress=False, **options)
    np.testing.assert_array_equal(ours.draws(500, seed=1)["mu"], theirs.draws(500, seed=1)["mu"])
    mu = ours.draws(4000, seed=2)["mu"]
    s = float(exact.stddev)
    assert abs(mu.mean() - float(exact.mean)) < 0.15 * s
    assert 0.85 < mu.std() / s < 1.15  # sd of 4000 draws: relative error 1/sqrt(2*4000) = 1.1%


def test_nuts_is_run_mcmc_with_the_same_seed_and_options(normal_mean):
    """``run_method("nuts", ...)`` is ``run_mcmc(model, ...)``: the same chain, draw for draw."""
    pair, y, _ = normal_mean
    options = dict(draws=100, warmup=100, chains=1, seed=5)
    ours = methods.run_method("nuts", pair.model, y, **options)
    theirs = vt.run_mcmc(pair.model, y, progress=False, **options)
    np.testing.assert_array_equal(ours.draws()["mu"], theirs.draws()["mu"])


@pytest.fixture
def fake_module(tmp_path, monkeypatch):
    """A method module on sys.path that records how it was called."""
    (tmp_path / "vt_fake_method.py").write_text(
        "def fit(model, *args, seed, progress, **options):\n"
        "    return {'model': model, 'args': args, 'seed': seed, 'progress': progress, 'options': options}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "vt_fake_method"


def test_lazy_method_is_imported_at_call_time_and_called_with_seed_progress_and_options(fake_module, monkeypatch):
    monkeypatch.setitem(methods._TARGETS, "pathfinder", f"{fake_module}:fit")
    assert fake_module not in sys.modules and "pathfinder" in methods.available()
    model = object()
    called = methods.run_method("pathfinder", model, 1, 2, seed=7, draws=30)
    assert called == {"model": model, "args": (1, 2), "seed": 7, "progress": False, "options": {"draws": 30}}


def test_absent_method_module_or_function_is_a_config_error_at_call_time(fake_module, monkeypatch):
    monkeypatch.setitem(methods._TARGETS, "dadvi", "vt_no_such_module_anywhere:dadvi")
    assert "dadvi" not in methods.available() and "nuts" in methods.available()
    with pytest.raises(vt.ConfigError, match="'dadvi' needs module vt_no_such_module_anywhere.*available here: normal"):
        methods.run_method("dadvi", lambda: None)
    monkeypatch.setitem(methods._TARGETS, "dadvi", "vt_no_such_package.sub:dadvi")  # a missing parent package
    assert "dadvi" not in methods.available()
    monkeypatch.setitem(methods._TARGETS, "dadvi", f"{fake_module}:no_such_function")
    with pytest.raises(vt.ConfigError, match="defines no function 'no_such_function'"):
        methods.run_method("dadvi", lambda: None)
