"""The README's Python examples run as written (the docs stay true)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import subprocess_env

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, env=subprocess_env())
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "digits.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "lr.png").is_file() and (tmp_path / "gradients.png").is_file()


def test_reliability_section_names_tests_that_exist():
    """Each promise in the README's "Reliability" table cites tests; they must exist."""
    text = README.read_text()
    section = text[text.index("## Reliability"):text.index("## Conventions")]
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(cited) >= 10
    for path, name in cited:
        source = (README.parent / path).read_text()
        assert f"def {name}(" in source, f"{path}::{name} is cited in the README but does not exist"


def test_readme_csv_command_line_walkthrough(tmp_path):
    """The README's CSV example (text labels, predict by column names) runs as written."""
    text = README.read_text()
    section = text[text.index("### The command line on a CSV file of your own"):]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.integers(20_000, 120_000, n),
                          "visits": rng.integers(0, 10, n)})
    frame["bought"] = np.where(frame["income"] / 1000 + 5 * frame["visits"] > 90, "yes", "no")
    frame.to_csv(tmp_path / "customers.csv", index=False)
    frame[["visits", "income", "age"]].to_csv(tmp_path / "new_customers.csv", index=False)  # no label, reordered
    outputs = []
    for line in block.strip().splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "gradstep"
        r = subprocess.run([sys.executable, "-m", "gradstep", *argv[1:]], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, env=subprocess_env())
        assert r.returncode == 0, (line, r.stderr[-2000:])
        outputs.append(r.stdout)
    assert "task: classification (auto: the target 'bought' holds 2 text labels (no, yes))" in outputs[0]
    assert set(outputs[1].split()) <= {"yes", "no"} and len(outputs[1].split()) == n
    proba = pd.read_csv(tmp_path / "p.csv")
    assert list(proba.columns) == ["no", "yes"] and np.allclose(proba.sum(axis=1), 1.0)
