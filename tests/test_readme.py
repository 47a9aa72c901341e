"""The README's examples run as written: each Python block pasted into a file (no main guard) and run."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
MARKER = "EXAMPLE-TOP-LEVEL"


def run_as_script(block, folder):
    """Run ``block`` as a script file with a marker printed by its top level; return its standard output."""
    script = folder / "example.py"
    script.write_text(f'print("{MARKER}", flush=True)\n' + block, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert out.stdout.count(MARKER) == 1  # the top level ran exactly once: no worker re-imported the script
    return out.stdout.split(MARKER, 1)[1].strip().splitlines()


def test_ten_line_example_runs_once_and_prints_the_means_it_claims(tmp_path):
    """The ten-line example, followed by the ArviZ lines that continue it."""
    continuation = next(block for block in BLOCKS if block.startswith("import arviz"))
    lines = run_as_script(BLOCKS[0] + continuation, tmp_path)
    vi_mean, exact_mean = map(float, re.findall(r"-?\d+\.\d*", lines[0])[:2])
    assert exact_mean == 8.0
    assert abs(vi_mean - 8.0) < 0.05  # posterior sd 0.45; 4000 draws: 4 standard errors ~ 0.03
    assert (tmp_path / "vi.nc").is_file() and (tmp_path / "runs" / "my-fit" / "metrics.json").is_file()


def test_own_loop_example_runs_once_and_lands_on_the_posterior_mean(tmp_path):
    lines = run_as_script(BLOCKS[1], tmp_path)
    assert any(line.startswith("step 500:") for line in lines)
    assert abs(float(lines[-1]) - 8.0) < 0.05
