"""The fuzzers of tools/ in CI, briefly: every `_core` binding (subprocess-isolated: a crash is a
failing test here, not a dead test runner) and tampered model files against gs.load.

The long runs are the same scripts with larger counts (README, "Reliability"):
    python tools/fuzz_bindings.py --calls 1000000 [--asan DIR]
    python tools/fuzz_files.py --files 10000
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

import gradstep as gs

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def run_tool(tmp_path, script: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(TOOLS / script), *args, "--json", str(report)],
                          capture_output=True, text=True, timeout=600, env=subprocess_env())
    assert report.exists(), proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc, json.loads(report.read_text())


def test_every_binding_survives_fuzzing(tmp_path):
    proc, report = run_tool(tmp_path, "fuzz_bindings.py", "--calls", "15000", "--seed", "7")
    assert report["crashes"] == [] and report["hangs"] == [], proc.stdout[-4000:]
    assert report["findings"] == [], proc.stdout[-4000:]
    assert report["calls"] >= 15000
    # Every public name of _core was called, and every function and class also ran to completion
    # at least once (the fuzzer reaches the kernels, not only the argument checks). A method may
    # need state from an earlier call (OpRunner.backward after forward), so methods are only
    # required to have been called.
    names = {n for n in dir(gs._core) if not n.startswith("_")}
    called = {k.split(".")[0] for k in report["counts"]}
    assert names <= called, sorted(names - called)
    never = [k for k in report["never_returned_normally"] if "." not in k]
    assert never == [], never


def test_tampered_model_files_are_refused_or_work(tmp_path):
    proc, report = run_tool(tmp_path, "fuzz_files.py", "--files", "1200", "--seed", "3")
    assert report["crashes"] == [] and report["hangs"] == [], proc.stdout[-4000:]
    assert report["counts"]["finding"] == 0, proc.stdout[-4000:]
    assert report["counts"]["refused"] > 600 and report["counts"]["accepted"] > 0, report["counts"]
