from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gradstep as gs
from conftest import subprocess_env


def run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "gradstep", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=subprocess_env())


def test_train_defaults_write_model_and_plot(tmp_path):
    r = run("train", "--epochs", "3", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    acc = float(r.stdout.split("test accuracy: ")[1].split()[0])
    assert acc > 0.85
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = gs.load(tmp_path / "model.safetensors")
    assert model.preprocessing is not None and model.in_features == 64


def test_train_on_csv_and_npz_then_predict(tmp_path, rng):
    X = rng.standard_normal((200, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    header = "a,b,c,d,e,label"
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header=header, comments="")
    r = run("train", "--data", "d.csv", "--target", "label", "--epochs", "5", "--layers", "16",
            "--quiet", "--plot", "", "--out", "m.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("train", "--data", "d.npz", "--epochs", "40", "--lr", "0.01", "--layers", "16", "--quiet", "--plot", "",
            "--out", "m.safetensors", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("predict", "--model", "m.safetensors", "--data", "d.npz", "--out", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pred = np.loadtxt(tmp_path / "p.csv", dtype=int)
    assert pred.shape == (200,) and np.mean(pred == y) > 0.8


@pytest.mark.parametrize("args, words", [
    (["train", "--data", "missing.npz"], "no such file"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--layers", "12,abc"], "--layers"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--activation", "swish"], "--activation"),
    (["train", "--data", "notes.txt"], "--data"),
    (["predict", "--model", "missing.safetensors", "--data", "x.npz"], "--model"),
    (["fly"], "invalid choice"),
])
def test_user_mistakes_print_one_line_and_exit_2(tmp_path, args, words):
    (tmp_path / "notes.txt").write_text("hello")
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_tampered_model_file_is_a_user_error(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"garbage" * 20)
    np.savez(tmp_path / "x.npz", X=np.zeros((2, 64)))
    r = run("predict", "--model", "m.safetensors", "--data", "x.npz", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_csv_is_a_user_error(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,x,0\n2,3,1\n")
    r = run("train", "--data", "d.csv", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_console_script_entry_point():
    from importlib.metadata import PackageNotFoundError, distribution, entry_points
    try:
        distribution("gradstep")
    except PackageNotFoundError:
        pytest.skip("gradstep is not installed (a development run from the source tree)")
    eps = [e for e in entry_points(group="console_scripts") if e.name == "gradstep"]
    assert eps and eps[0].value == "gradstep.cli:main"


def test_version_flag_prints_the_package_version(capsys):
    from gradstep import cli
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradstep {gs.__version__}"


def test_predict_names_target_labels_the_model_does_not_know(tmp_path, monkeypatch, capsys):
    # A yes/no model scored against a column of 2/5 must not just print "accuracy: 0.0000".
    from gradstep import cli
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    with open("train.csv", "w") as f:
        f.write("a,b,label\n")
        f.writelines(f"{a},{b},{'yes' if a > 0 else 'no'}\n" for a, b in X)
    with open("other.csv", "w") as f:
        f.write("a,b,label\n")
        f.writelines(f"{a},{b},{2 if a > 0 else 5}\n" for a, b in X[:10])
    assert cli.main(["train", "--data", "train.csv", "--target", "label", "--epochs", "1",
                     "--plot", "", "--out", "m.safetensors"]) == 0
    capsys.readouterr()
    assert cli.main(["predict", "--model", "m.safetensors", "--data", "other.csv"]) == 0
    err = capsys.readouterr().err
    assert "accuracy: 0.0000" in err and "labels 2, 5 are not among the model's classes (no, yes)" in err
