"""The `corpus` experiment (every method on the posteriordb translations) through :mod:`vi_toolkit.experiment`:
its table holds exactly what ``vt.compare`` says of the same fits, a method that fails is a row with its error,
and without a corpus it runs nothing and says how to point to one."""

import math

import pandas as pd
import pytest

import vi_toolkit as vt
from vi_toolkit import experiments, methods, posteriordb
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.models.posteriordb_targets import load_target
from vi_toolkit.run_folder import RunFolder

ROOT = posteriordb.default_root()
EIGHT_SCHOOLS = "eight_schools-eight_schools_noncentered"
needs_corpus = pytest.mark.skipif(ROOT is None or not (ROOT / EIGHT_SCHOOLS).is_dir(),
                                  reason="posteriordb data (../shared/data/posteriordb) not found")
NUMBERS = ["std_mean_error_max", "std_mean_error_mean", "sd_ratio_min", "sd_ratio_max", "w1_max", "w1_mean",
           "khat", "elbo", "seconds"]


def _run(tmp_path, demo=False, **overrides):
    experiment = experiments.get("corpus")
    config = build_config(experiment, demo=demo, overrides={k: str(v) for k, v in overrides.items()})
    folder = RunFolder.create(tmp_path / "corpus")
    return folder.path, config, run_experiment(experiment, config, folder, seed=4)


@needs_corpus
def test_table_is_compare_of_the_same_fits_and_a_failing_method_is_a_row(tmp_path, monkeypatch):
    """Eight schools with a mean-field fit and NUTS (tiny budgets: the numbers are checked for equality with a
    re-run of the same fits, not for accuracy), and a method whose module is absent."""
    monkeypatch.setitem(methods._TARGETS, "dadvi", "vt_no_such_module_anywhere:dadvi")
    path, config, record = _run(tmp_path, posteriors=EIGHT_SCHOOLS, methods="normal,nuts,dadvi", seeds=1,
                                steps=150, lr=0.05, num_particles=1, draws=60, warmup=60, chains=1)
    table = pd.read_csv(path / "tables" / "corpus.csv", keep_default_na=False, na_values=[""])
    assert list(table.method) == ["normal", "nuts", "dadvi"] and (table.posterior == EIGHT_SCHOOLS).all()
    target = load_target(EIGHT_SCHOOLS, root=ROOT)
    budgets = {"normal": dict(steps=150, lr=0.05, num_particles=1), "nuts": dict(draws=60, warmup=60, chains=1)}
    for row in table.iloc[:2].itertuples():
        result = methods.run_method(row.method, target.pair.model, *target.args, seed=row.fit_seed,
                                    **budgets[row.method])
        expected = vt.compare({row.method: result}, target.reference, seed=row.draws_seed).iloc[0]
        for column in NUMBERS[:-1]:  # seconds: the re-run's clock differs
            assert getattr(row, column) == pytest.approx(expected[column], rel=1e-12, nan_ok=True), column
        assert (row.verdict if isinstance(row.verdict, str) else "") == expected.verdict
        assert row.parameters == len(target.reference) == 10 and row.error != row.error  # NaN: no error
        grad_evals = result.info.get("grad_evals")
        assert (math.isnan(row.grad_evals) if grad_evals is None else row.grad_evals == grad_evals)
    failed = table.iloc[2]
    assert failed.error.startswith("ConfigError: method 'dadvi' needs module vt_no_such_module_anywhere")
    assert all(math.isnan(failed[c]) for c in NUMBERS)
    summary = pd.read_csv(path / "tables" / "methods.csv").set_index("method")
    assert summary.loc["dadvi", "failed"] == 1 and summary.loc["normal", "failed"] == 0
    assert summary.loc["normal", "worst_std_mean_error"] == pytest.approx(table.std_mean_error_max[0], rel=1e-12)
    assert "1 failed" in record["summary"]
    figures = sorted(p.name for p in (path / "figures").glob("*.png"))
    assert figures == ["cost-vs-w1.png", "error-heat-map.png", "verdict-vs-error.png", "w1-heat-map.png"]


@needs_corpus
def test_nuts_rows_come_from_the_validation_records_where_nuts_is_not_run(tmp_path):
    """methods=normal: the table also holds NUTS's row of the same posterior, read from its validation record
    (benchmarks/results/corpus_nuts, in the repository) number for number, and the summary counts it."""
    from vi_toolkit.experiments import corpus

    record = corpus.validation()[EIGHT_SCHOOLS]
    path, config, _ = _run(tmp_path, posteriors=EIGHT_SCHOOLS, methods="normal", seeds=1, steps=100, lr=0.05,
                           num_particles=1)
    table = pd.read_csv(path / "tables" / "corpus.csv", keep_default_na=False, na_values=[""])
    assert list(table.method) == ["normal", corpus.RECORDS_METHOD]
    nuts = table.iloc[1]
    for column in ("std_mean_error_max", "sd_ratio_min", "sd_ratio_max", "w1_max", "seconds"):
        assert nuts[column] == pytest.approx(record[column], rel=1e-12), column
    assert nuts.nuts_validated == record["validated"] and nuts.error != nuts.error  # NaN: no error
    summary = pd.read_csv(path / "tables" / "methods.csv").set_index("method")
    assert summary.loc[corpus.RECORDS_METHOD, "worst_std_mean_error"] == pytest.approx(record["std_mean_error_max"])
    _, _, without = _run(tmp_path / "off", posteriors=EIGHT_SCHOOLS, methods="normal", seeds=1, steps=100,
                         nuts_records=False)
    assert corpus.RECORDS_METHOD not in without["summary"]


def test_without_a_corpus_nothing_runs_and_the_summary_says_how_to_point_to_one(tmp_path, monkeypatch):
    monkeypatch.setattr(posteriordb, "default_root", lambda: None)
    path, config, record = _run(tmp_path / "none", demo=True)
    assert record["summary"].startswith("No posteriordb corpus found") and "--set root=FOLDER" in record["summary"]
    assert not (path / "figures").exists() and not (path / "tables").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    path, config, record = _run(tmp_path / "elsewhere", demo=True, root=empty)
    assert f"is under {empty}" in record["summary"] and not (path / "figures").exists()


def test_bad_settings_are_refused_before_anything_runs():
    experiment = experiments.get("corpus")
    for key, value, message in [("methods", "advi", "unknown"), ("posteriors", "no-such-posterior", "no Pyro"),
                                ("root", "/no/such/folder", "not a folder")]:
        with pytest.raises(vt.ConfigError, match=message):
            build_config(experiment, overrides={key: value})
