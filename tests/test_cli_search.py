"""`gradstep search`: cli_search.add_parser / run, wired the way cli.py wires its subcommands."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gradstep as gs
from conftest import subprocess_env
from gradstep import cli, search
from gradstep.cli import common
from gradstep.cli import search as cli_search

# The lead's wiring in cli.py: a subparser per command, errors as UsageError -> one line, exit 2.
MAIN = """
import sys
from gradstep import cli, search
from gradstep.cli import common
from gradstep.cli import search as cli_search
parser = common.Parser(prog="gradstep")
sub = parser.add_subparsers(dest="command", parser_class=common.Parser)
cli_search.add_parser(sub)
try:
    args = parser.parse_args(sys.argv[1:])
    sys.exit(cli_search.run(args))
except common.UsageError as e:
    print(f"gradstep: error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def parse(*argv):
    parser = common.Parser(prog="gradstep")
    sub = parser.add_subparsers(dest="command", parser_class=common.Parser)
    cli_search.add_parser(sub)
    return parser.parse_args(["search", *argv])


def table_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("..."):
            break
        rows.append(line.split())
    return [lines[start].split()] + rows


QUICK = ("--layers", "16", "--threads", "1", "--quiet")


def test_random_search_prints_trials_sorted_by_score(capsys, tmp_path):
    out_file = tmp_path / "best.safetensors"
    args = parse("--trials", "3", "--epochs", "1", "--lr-range", "1e-3,1e-1", "--layers-choices", "16", "32,16",
                 "--out", str(out_file), *QUICK)
    assert cli_search.run(args) == 0
    out = capsys.readouterr().out
    assert "random search: 3 trials x 1 epochs" in out
    head, *rows = table_rows(out)
    assert head == ["rank", "trial", "lr", "layers", "val_accuracy", "epochs", "status"]
    assert len(rows) == 3
    scores = [float(r[4]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r[3] for r in rows} <= {"16", "32,16"}
    assert all(1e-3 <= float(r[2]) <= 1e-1 for r in rows)
    assert "best: trial " + rows[0][1] in out and "test accuracy" in out
    model = gs.load(out_file)  # the best model, retrained, with the input standardization
    assert model.preprocessing is not None and model.in_features == 64


def test_same_flags_same_output(capsys):
    args = ("--trials", "2", "--epochs", "1", *QUICK)
    cli_search.run(parse(*args))
    first = capsys.readouterr().out
    cli_search.run(parse(*args))
    assert capsys.readouterr().out == first


def test_coarse_to_fine_with_cv(capsys):
    args = parse("--stages", "3x1,2x1", "--top", "2", "--cv", "2", "--optimizer-choices", "adam", "sgd",
                 "--show", "4", *QUICK)
    assert cli_search.run(args) == 0
    out = capsys.readouterr().out
    assert "coarse-to-fine: 3 trials x 1 epochs, 2 trials x 1 epochs" in out
    assert "2-fold cross-validation" in out
    head, *rows = table_rows(out)
    assert head[:3] == ["rank", "trial", "stage"] and "± std" in " ".join(head)
    assert len(rows) == 4 and "... 1 more trials" in out
    assert {r[2] for r in rows} <= {"1", "2"}  # stages numbered from 1, as the progress lines do


def test_regression_data_shows_val_loss_lower_is_better(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3))
    y = X @ np.array([1.0, 2.0, -1.0])
    path = tmp_path / "reg.npz"
    np.savez(path, X=X, y=y)
    assert cli_search.run(parse("--data", str(path), "--trials", "2", "--epochs", "2", *QUICK)) == 0
    out = capsys.readouterr().out
    head, *rows = table_rows(out)
    assert "regression" in out and head[3] == "val_loss" and "test mse loss" in out
    losses = [float(r[3]) for r in rows]
    assert all(v > 0 for v in losses) and losses == sorted(losses)  # the loss itself, best (lowest) first
    assert f"(val_loss {losses[0]:.4f})" in out  # the best line names the metric with its own sign
    assert cli_search.run(parse("--data", str(path), "--trials", "2", "--epochs", "1", "--metric", "mae",
                                *QUICK)) == 0
    head, *rows = table_rows(capsys.readouterr().out)
    assert head[3] == "val_mae" and all(float(r[3]) > 0 for r in rows)
    with pytest.raises(common.UsageError, match="--metric accuracy"):
        cli_search.run(parse("--data", str(path), "--metric", "accuracy", *QUICK))


def test_default_space_is_the_learning_rate():
    space = cli_search.search_space(parse())
    assert space == {"lr": search.LogUniform(1e-4, 1e-1)}
    space = cli_search.search_space(parse("--l2-range", "1e-5,1e-2", "--activation-choices", "relu", "tanh"))
    assert set(space) == {"l2", "activation"}  # lr then stays at --lr


@pytest.mark.parametrize("argv, word", [
    (["--lr-range", "1e-1,1e-4"], "--lr-range"),
    (["--lr-range", "0,1"], "--lr-range"),
    (["--lr-range", "abc"], "--lr-range"),
    (["--l2-range", "1e-3"], "--l2-range"),
    (["--stages", "20x"], "--stages"),
    (["--stages", "0x2"], "--stages"),
    (["--cv", "1"], "--cv"),
    (["--n-jobs", "0"], "--n-jobs"),
    (["--trials", "0"], "--trials"),
    (["--layers-choices", "64,x"], "--layers-choices"),
    (["--activation-choices", "swish"], "--activation-choices"),
    (["--metric", "f1"], "--metric"),
])
def test_bad_flags_are_usage_errors(argv, word):
    with pytest.raises(common.UsageError, match=word):
        parse(*argv)


def test_subprocess_exit_codes(tmp_path):
    env = subprocess_env()
    ok = subprocess.run([sys.executable, "-c", MAIN, "search", "--trials", "2", "--epochs", "1", *QUICK],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "val_accuracy" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-c", MAIN, "search", "--lr-range", "1,0.1"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("gradstep: error: argument --lr-range")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_progress_lines_and_table_number_trials_alike(capsys):
    """Item 12: trial k of the progress lines is trial k of the table, with the same score."""
    args = parse("--trials", "3", "--epochs", "1", "--layers", "16", "--threads", "1")
    assert cli_search.run(args) == 0
    out = capsys.readouterr().out
    progress = {}
    for line in out.splitlines():
        if line.startswith("trial "):
            number = line.split()[1].split("/")[0]
            progress[number] = line.split("-> val_accuracy ")[1].split()[0]
    head, *rows = table_rows(out)
    table = {r[1]: r[head.index("val_accuracy")] for r in rows}
    assert set(progress) == {"1", "2", "3"} and progress == table
    assert f"best: trial {rows[0][1]}:" in out
