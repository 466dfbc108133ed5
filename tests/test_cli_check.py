"""`gradstep check` (gradstep/cli/check.py): the babysitting report; as a linter, exit status 1 with
findings, 0 when clean, 2 on a user's mistake. Runs the subcommand through a parser built here (as cli.main does), and through
`python -m gradstep check` once the command is wired into cli.py."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import subprocess_env
from gradstep import cli
from gradstep.cli import check as cli_check
from gradstep.cli import common

FAST = ["--layers", "32", "--epochs", "2", "--lr-steps", "30", "--overfit-steps", "300"]


def main(argv):
    """What cli.main does for a subcommand: parse, run, and turn a UsageError into status 2."""
    parser = common.Parser(prog="gradstep")
    sub = parser.add_subparsers(dest="command", parser_class=common.Parser)
    cli_check.add_parser(sub)
    try:
        args = parser.parse_args(argv)
        return cli_check.run(args)
    except common.UsageError as e:
        print(f"gradstep: error: {e}", file=sys.stderr)
        return 2


def test_check_report_on_digits(tmp_path, capsys):
    lr_png, g_png = tmp_path / "lr.png", tmp_path / "g.png"
    rc = main(["check", *FAST, "--lr-plot", str(lr_png), "--gradients-plot", str(g_png)])
    out = capsys.readouterr().out
    assert rc == 0
    for section in ("1. initial loss", "2. gradient check", "3. overfit 20 samples", "4. learning-rate finder",
                    "5. 2 epochs with a GradientMonitor", "summary"):
        assert section in out, section
    assert "PASSED" in out and "[ok] the initial loss" in out and "[ok] a copy of the model fits" in out
    assert "suggestion" in out and "diagnose found nothing wrong" in out and "no problems found" in out
    for png in (lr_png, g_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_reports_findings_and_exits_1(capsys):
    rc = main(["check", *FAST, "--optimizer", "sgd", "--lr", "1e-6", "--epochs", "3"])
    out = capsys.readouterr().out
    assert rc == 1  # like a linter: something was found
    assert "[cannot_overfit]" in out and "[lr_too_low]" in out
    assert "consider --lr" in out  # the finder's suggestion is far from 1e-6
    summary = out.split("\nsummary")[1]
    assert "finding" in summary and "lr_too_low" in summary


def test_check_regression_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(150)
    np.savez(tmp_path / "r.npz", X=X, y=y)
    rc = main(["check", "--data", str(tmp_path / "r.npz"), *FAST, "--dtype", "float64"])
    out = capsys.readouterr().out
    assert "regression" in out and "MSE" in out and "target variance" in out
    # the exit status says whether the summary lists findings (which ones the rules find is
    # the diagnostics' business)
    assert rc == (0 if "no problems found" in out.split("\nsummary")[1] else 1)


@pytest.mark.parametrize("argv, words", [
    (["--overfit-samples", "100000"], "--overfit-samples"),
    (["--lr-plot", "curve.txt"], "--lr-plot"),
    (["--lr-steps", "1"], "--lr-steps"),
    (["--data", "missing.csv"], "no such file"),
    (["--layers", "0"], "positive integers"),
    (["--overfit-samples", "zero"], "positive integer"),
])
def test_check_usage_errors_exit_2(argv, words, capsys):
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradstep: error:") and words in err and "Traceback" not in err


def test_check_defaults_and_help():
    parser = common.Parser(prog="gradstep")
    sub = parser.add_subparsers(dest="command", parser_class=common.Parser)
    p = cli_check.add_parser(sub)
    args = parser.parse_args(["check"])
    assert args.epochs == 5 and args.overfit_samples == 20 and args.data == "digits" and args.layers == [128, 64]
    text = p.format_help()
    for flag in ("--data", "--layers", "--activation", "--lr", "--overfit-samples", "--lr-plot"):
        assert flag in text


def test_gradstep_check_command(tmp_path):
    assert "check" in cli.COMMANDS
    env = subprocess_env()
    r = subprocess.run([sys.executable, "-m", "gradstep", "check", *FAST], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "summary" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gradstep", "check", "--lr-plot", "x.txt"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2 and "--lr-plot" in r.stderr
