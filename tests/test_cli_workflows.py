"""The command line the way a user runs it on CSV and NPZ files of their own (issue 9: items 1-5,
7, 12 and the command-line half of 13). Most commands run in-process through `cli.main`
(fast); Ctrl-C and the entry point run as subprocesses."""
from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time
from pathlib import Path

import gradstep as gs
import numpy as np
import pandas as pd
import pytest
from conftest import subprocess_env
from gradstep import cli
from gradstep.cli import common, data

QUIET = ["--quiet", "--plot", "", "--threads", "1"]


def main(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *words):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 3))
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    yes = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    frame.assign(buy=yes).to_csv("yesno.csv", index=False)
    grade = 1 + (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    frame.assign(grade=grade).to_csv("grade.csv", index=False)
    return tmp_path


# ---- item 1: the task --------------------------------------------------------------------------
def test_auto_task_calls_diabetes_a_regression(work, capsys):
    from sklearn.datasets import load_diabetes
    load_diabetes(as_frame=True, scaled=False).frame.to_csv("diabetes.csv", index=False)
    rc, out, _ = main(capsys, "train", "--data", "diabetes.csv", "--epochs", "2", "--out", "d.safetensors", *QUIET)
    assert rc == 0
    line = next(l for l in out.splitlines() if l.startswith("task:"))
    assert line.startswith("task: regression (auto:") and "214 distinct whole numbers" in line
    assert "test mse loss" in out and "accuracy" not in out
    model = gs.load("d.safetensors")
    assert isinstance(model.loss, gs.MSE) and model.out_features == 1 and model.classes_ is None
    rc, out, _ = main(capsys, "train", "--data", "diabetes.csv", "--task", "classification", "--epochs", "1",
                      "--out", "", *QUIET)
    assert rc == 0 and "task: classification (--task classification)" in out and "214 classes" in out


def test_decide_task_rules():
    whole = np.array([1, 2, 3] * 10)
    t = data.decide_task(whole, "auto", "grade")
    assert t.classification and t.classes.tolist() == [1, 2, 3] and "3 distinct whole numbers" in t.why
    t = data.decide_task(np.arange(100) % 40, "auto", None)
    assert not t.classification and "40 distinct" in t.why
    t = data.decide_task(np.array([0.5, 1.5, 2.0, 3.0]), "auto", None)
    assert not t.classification and "not whole" in t.why
    t = data.decide_task(np.array(["no", "yes", "no"]), "auto", "buy")
    assert t.classification and t.classes.tolist() == ["no", "yes"] and "text labels" in t.why
    with pytest.raises(common.UsageError, match="--task regression.*text"):
        data.decide_task(np.array(["no", "yes"]), "regression", "buy")
    with pytest.raises(common.UsageError, match="--task classification.*not whole"):
        data.decide_task(np.array([0.5, 1.0]), "classification", None)
    with pytest.raises(common.UsageError, match="single class"):
        data.decide_task(np.array(["a"] * 5), "auto", None)


# ---- item 2: class values ----------------------------------------------------------------------
def test_labels_1_to_3_come_back_as_1_to_3(work, capsys):
    rc, out, _ = main(capsys, "train", "--data", "grade.csv", "--epochs", "30", "--layers", "16",
                      "--lr", "0.01", "--out", "g.safetensors", *QUIET)
    assert rc == 0 and "3 distinct whole numbers (1, 2, 3)" in out
    test_acc = float(out.split("test accuracy: ")[1].split()[0])
    assert test_acc > 0.8
    assert gs.load("g.safetensors").classes_.tolist() == [1, 2, 3]
    rc, out, err = main(capsys, "predict", "--model", "g.safetensors", "--data", "grade.csv")
    pred = [int(v) for v in out.split()]
    truth = pd.read_csv("grade.csv")["grade"].to_numpy()
    assert rc == 0 and set(pred) <= {1, 2, 3} and np.mean(np.array(pred) == truth) > 0.8
    assert f"accuracy: {np.mean(np.array(pred) == truth):.4f} (240 samples against the column 'grade')" in err


# ---- items 3, 5, 7: names, preprocessing in the model, string labels ---------------------------
def test_string_labels_columns_by_name_and_the_same_answers_in_python(work, capsys):
    rc, out, _ = main(capsys, "train", "--data", "yesno.csv", "--epochs", "10", "--layers", "16",
                      "--out", "m.safetensors", *QUIET)
    assert rc == 0 and "2 text labels (no, yes)" in out
    rc, out, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "yesno.csv")
    full = out.split()
    assert rc == 0 and set(full) <= {"yes", "no"} and "accuracy: " in err
    frame = pd.read_csv("yesno.csv")
    frame[["buy", "c", "a", "b"]].to_csv("reordered.csv", index=False)
    frame[["c", "b", "a"]].to_csv("features.csv", index=False)
    frame[["a", "c", "buy"]].to_csv("missing.csv", index=False)
    frame.assign(id=1)[["id", "a", "b", "c"]].to_csv("extra.csv", index=False)
    rc, out, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "reordered.csv")
    assert rc == 0 and out.split() == full and "accuracy" in err
    rc, out, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "features.csv")
    assert rc == 0 and out.split() == full and err == ""
    rc, _, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "missing.csv")
    one_line_error(rc, err, "lacks the feature column(s) ['b']")
    rc, _, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "extra.csv")
    one_line_error(rc, err, "not trained on ['id']")
    rc, _, err = main(capsys, "predict", "--model", "m.safetensors", "--data", "features.csv", "--target", "buy")
    one_line_error(rc, err, "--target", "no column named 'buy'")
    # Item 5: the model file standardizes raw data itself; Python gives what the command line gives.
    model = gs.load("m.safetensors")
    assert model.feature_names_in_ == ["a", "b", "c"] and model.preprocessing is not None
    X = frame[model.feature_names_in_].to_numpy()
    assert model.predict_classes(X).tolist() == full
    rc, _, _ = main(capsys, "predict", "--model", "m.safetensors", "--data", "features.csv", "--proba",
                    "--out", "p.npy")
    np.testing.assert_array_equal(np.load("p.npy"), model.predict_proba(X))
    assert model.evaluate(X, frame["buy"].to_numpy())["accuracy"] == pytest.approx(np.mean(np.array(full) == frame["buy"]))


def test_one_hot_npz_and_multi_label_refused(work, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    np.savez("onehot.npz", X=X, y=np.eye(3)[y])
    rc, out, _ = main(capsys, "train", "--data", "onehot.npz", "--epochs", "20", "--layers", "16", "--lr", "0.01",
                      "--out", "oh.safetensors", *QUIET)
    assert rc == 0 and "one-hot rows of 3 columns" in out and "3 classes" in out
    rc, out, err = main(capsys, "predict", "--model", "oh.safetensors", "--data", "onehot.npz")
    assert rc == 0 and np.mean(np.array(out.split(), dtype=int) == y) > 0.8
    assert "accuracy: " in err
    np.savez("multi.npz", X=X, y=(X[:, :3] > 0).astype(float))
    rc, _, err = main(capsys, "train", "--data", "multi.npz", "--epochs", "1", *QUIET)
    one_line_error(rc, err, "multi-label")


def test_dropout_batch_norm_and_early_stopping(work, capsys):
    rc, out, _ = main(capsys, "train", "--data", "yesno.csv", "--epochs", "60", "--layers", "16,8", "--dropout", "0.2",
                      "--batch-norm", "--early-stopping", "2", "--lr", "0.05", "--out", "m.safetensors", *QUIET)
    assert rc == 0
    model = gs.load("m.safetensors")
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds == ["Dense", "BatchNorm", "ReLU", "Dropout", "Dense", "BatchNorm", "ReLU", "Dropout", "Dense"]
    assert model.layers[3].p == pytest.approx(0.2)
    assert "early stopping after epoch" in out and model.epochs_done < 60


def test_checkpoint_and_resume_give_the_uninterrupted_weights(work, capsys):
    flags = ["--data", "yesno.csv", "--layers", "16", "--dropout", "0.1", "--batch-norm", "--batch-size", "16", *QUIET]
    assert main(capsys, "train", *flags, "--epochs", "4", "--out", "full.safetensors")[0] == 0
    assert main(capsys, "train", *flags, "--epochs", "2", "--out", "half.safetensors",
                "--checkpoint", "ck.safetensors")[0] == 0
    assert gs.load("ck.safetensors").epochs_done == 2
    rc, out, _ = main(capsys, "train", "--resume", "ck.safetensors", "--epochs", "4", "--out", "resumed.safetensors",
                      "--data", "yesno.csv", *QUIET)
    assert rc == 0 and "resuming ck.safetensors: 2 epoch(s) done" in out
    full, resumed = gs.load("full.safetensors"), gs.load("resumed.safetensors")
    assert resumed.epochs_done == 4
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    from gradstep.io import _split_optimizer_state
    meta_a, arrays_a = _split_optimizer_state(full.optimizer.state_dict())
    meta_b, arrays_b = _split_optimizer_state(resumed.optimizer.state_dict())
    assert meta_a == meta_b and arrays_a.keys() == arrays_b.keys() and arrays_a
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    rc, _, err = main(capsys, "train", "--resume", "missing.safetensors", *QUIET)
    one_line_error(rc, err, "--resume")


def test_output_paths_are_checked_before_training(work, capsys):
    for flag in ("--out", "--checkpoint", "--plot"):
        rc, out, err = main(capsys, "train", "--data", "yesno.csv", flag, "no/such/dir/x.png", "--quiet")
        one_line_error(rc, err, flag, "does not exist")
        assert "task:" not in out  # nothing was read or trained
    rc, _, err = main(capsys, "train", "--data", "yesno.csv", "--out", ".", "--quiet")
    one_line_error(rc, err, "--out", "is a directory")


def test_every_help_shows_the_defaults():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "train" in a.choices)
    for name, p in sub.choices.items():
        formatter = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or action.help == argparse_suppress() or action.nargs == 0:
                continue  # -h and on/off switches
            if action.required:
                continue
            assert "default" in formatter._get_help_string(action), (name, action.option_strings)
        text = p.format_help()
        assert "(default: " in text


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


# ---- Ctrl-C -----------------------------------------------------------------------------------------
def _start(tmp_path, *argv):
    env = {**subprocess_env(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "gradstep", *argv], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, prefix, limit=120.0):
    lines = []
    start = time.monotonic()
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix) or time.monotonic() - start > limit:
            break
    return lines


def test_ctrl_c_in_train_saves_the_model_and_exits_130(tmp_path):
    proc = _start(tmp_path, "train", "--epochs", "100000", "--layers", "32", "--quiet", "--out", "m.safetensors",
                  "--threads", "1")
    _wait_for(proc, "Total parameters")
    time.sleep(1.5)  # training is under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted in epoch" in err and "saved the model" in err
    model = gs.load(tmp_path / "m.safetensors")
    assert 0 <= model.epochs_done < 100000 and model.preprocessing is not None
    assert "test accuracy" not in out


def test_ctrl_c_in_search_prints_the_finished_trials(tmp_path):
    proc = _start(tmp_path, "search", "--trials", "1000", "--epochs", "1", "--layers", "16", "--threads", "1")
    lines = _wait_for(proc, "trial 2/1000")
    assert lines and lines[-1].startswith("trial 2/1000")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    table = out[out.index("rank"):].splitlines()
    rows = [l.split() for l in table[2:] if l.strip()]
    assert len(rows) >= 2 and {"1", "2"} <= {r[1] for r in rows}
    assert "interrupted" in err and "Traceback" not in err


# ---- item 13: the package ----------------------------------------------------------------------
def test_cli_modules_form_a_tree():
    """common and data import no command; a command imports common/data, never another command."""
    package = Path(cli.__file__).parent
    commands = {"train", "predict", "check", "search"}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        local = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                local |= {node.module} if node.module else {a.name for a in node.names}
        if path.stem == "common":
            assert not local, local
        elif path.stem == "data":
            assert local <= {"common"}, local
        elif path.stem in commands:
            assert local <= {"common", "data"}, (path.stem, local)
    r = subprocess.run([sys.executable, "-m", "gradstep", "--help"], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0 and "{train,predict,check,search}" in r.stdout
    assert not (package.parent / "cli_check.py").exists() and not (package.parent / "cli_search.py").exists()
