"""Installed, the toolkit claims no generic top-level names: its pairs and experiments live under vi_toolkit."""

import subprocess
import sys


def _run(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_generic_names_are_not_installed(tmp_path):
    for name in ("models", "experiments"):
        out = _run(f"import {name}", tmp_path)  # outside the checkout: nothing named so is installed
        assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr, (name, out.stderr)


def test_a_users_own_models_module_does_not_shadow_the_toolkits(tmp_path):
    (tmp_path / "models.py").write_text("MINE = True\n")
    out = _run("import models; from vi_toolkit import models as pairs; "
               "print(models.MINE, 'normal-mean' in pairs.available())", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_importing_the_toolkit_sets_no_matplotlib_backend_and_no_threads(tmp_path):
    out = _run("import torch; n = torch.get_num_threads(); import matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
               "import vi_toolkit, vi_toolkit.models, vi_toolkit.experiments, vi_toolkit.plots; "
               "print(torch.get_num_threads() == n, matplotlib.rcParams._get_backend_or_none() == before)", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
