"""The README's Python examples run as written (the docs stay true)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
