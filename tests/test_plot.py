"""gs.plot: history, lr_find and gradients figures (inspected through their Axes, saved as PNG)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradstep as gs
from gradstep import diagnostics as D

plt = pytest.importorskip("matplotlib.pyplot")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained():
    X, y = gs.datasets.load_digits()
    X = gs.datasets.standardize(X[:300])
    y = y[:300]
    model = gs.Sequential([gs.Dense(64, 32), gs.ReLU(), gs.Dense(32, 16, init="xavier"), gs.Tanh(),
                           gs.Dense(16, 10, init="xavier")], seed=0)
    model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(1e-3), metrics=["accuracy"])
    result = D.lr_find(model, X, y, steps=60)
    monitor = D.GradientMonitor()
    history = model.fit(X, y, epochs=4, validation_split=0.2, callbacks=[monitor], verbose=0)
    return history, result, monitor


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 1000


def test_history_still_works(trained, tmp_path):
    history, _, _ = trained
    fig = gs.plot.history(history, tmp_path / "h.png")
    try:
        assert _is_png(tmp_path / "h.png")
        titles = [ax.get_title() for ax in fig.axes]
        assert titles == ["loss", "accuracy"]
        assert len(fig.axes[0].get_lines()) == 2  # train and validation
    finally:
        plt.close(fig)


def test_lr_find_plot(trained, tmp_path):
    _, result, _ = trained
    fig = gs.plot.lr_find(result, tmp_path / "lr.png")
    try:
        assert _is_png(tmp_path / "lr.png")
        (ax,) = fig.axes
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
        lines = {line.get_label(): line for line in ax.get_lines()}
        np.testing.assert_array_equal(lines["smoothed loss"].get_xdata(), result.lrs)
        np.testing.assert_array_equal(lines["smoothed loss"].get_ydata(), result.losses)
        np.testing.assert_array_equal(lines["loss per mini-batch"].get_ydata(), result.raw_losses)
        vline = next(line for label, line in lines.items() if label.startswith("suggestion"))
        assert list(vline.get_xdata()) == [result.suggestion] * 2
        marker = lines["_suggestion"]
        assert marker.get_marker() == "o" and len(marker.get_xdata()) == 1
        assert marker.get_xdata()[0] == pytest.approx(result.suggestion, rel=0.3)  # the nearest swept lr
        minimum = next(line for label, line in lines.items() if label.startswith("minimum"))
        assert minimum.get_xdata()[0] == result.min_loss_lr and minimum.get_marker() == "v"
    finally:
        plt.close(fig)
    assert gs.plot.lr_find(result) is not None  # no path: nothing saved, the figure comes back
    plt.close("all")


def test_gradients_plot(trained, tmp_path):
    _, _, monitor = trained
    fig = gs.plot.gradients(monitor, tmp_path / "g.png")
    try:
        assert _is_png(tmp_path / "g.png")
        ax_g, ax_r, ax_u = fig.axes
        assert ax_g.get_yscale() == "log"
        labels = [line.get_label() for line in ax_g.get_lines()]
        assert labels == ["0.Dense", "2.Dense", "4.Dense"]
        line = ax_g.get_lines()[0]
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(line.get_ydata(), monitor.series("0.Dense", "grad_norm"))
        # the update ratio, per layer, with the healthy 1e-3 marked
        assert ax_r.get_yscale() == "log" and "update" in ax_r.get_title()
        lines = {line.get_label(): line for line in ax_r.get_lines()}
        assert {"0.Dense", "2.Dense", "4.Dense"} <= set(lines)
        np.testing.assert_allclose(lines["2.Dense"].get_ydata(), monitor.series("2.Dense", "update_ratio"))
        assert list(lines["~1e-3 healthy"].get_ydata()) == [1e-3, 1e-3]
        labels = [line.get_label() for line in ax_u.get_lines()]
        assert labels == ["1.ReLU dead units", "3.Tanh saturated"]
        np.testing.assert_allclose(ax_u.get_lines()[1].get_ydata(), monitor.series("3.Tanh", "saturated"))
        assert ax_u.get_ylim()[0] < 0 and ax_u.get_ylim()[1] > 1
    finally:
        plt.close(fig)


def test_gradients_plot_without_activation_layers_and_zero_norms(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 3))
    model = gs.Sequential([gs.Dense(3, 4), gs.Identity(), gs.Dense(4, 1)], seed=0)
    model.compile(gs.MSE(), gs.SGD(0.01))
    monitor = D.GradientMonitor()
    model.fit(X, X[:, :1], epochs=2, verbose=0, callbacks=[monitor])
    monitor.records[0]["layers"]["0.Dense"]["grad_norm"] = 0.0  # cannot sit on a log axis: a gap
    fig = gs.plot.gradients(monitor, tmp_path / "g.png")
    try:
        ax_g, _, ax_u = fig.axes
        assert math.isnan(ax_g.get_lines()[0].get_ydata()[0])
        assert ax_u.get_lines() == [] and "no ReLU" in ax_u.texts[0].get_text()
    finally:
        plt.close(fig)


def _tick_values(ax):
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_every_epoch_axis_has_integer_ticks_also_for_one_epoch(tmp_path):
    # issue 9 item 10: a 1-epoch run drew an axis of 0.96, 0.98, 1.00, ... around its one point
    X, y = gs.datasets.load_digits()
    X = gs.datasets.standardize(X[:200])
    for epochs in (1, 3):
        model = gs.Sequential([gs.Dense(64, 16), gs.ReLU(), gs.Dense(16, 10)], seed=0)
        model.compile(gs.SoftmaxCrossEntropy(), gs.Adam(1e-3), metrics=["accuracy"])
        monitor = D.GradientMonitor()
        history = model.fit(X, y[:200], epochs=epochs, validation_split=0.2, callbacks=[monitor], verbose=0)
        for fig in (gs.plot.history(history), gs.plot.gradients(monitor)):
            try:
                fig.canvas.draw()
                for ax in fig.axes:
                    ticks = _tick_values(ax)
                    assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
                    assert ax.get_xlabel() == "epoch"
                    if epochs == 1:
                        assert ax.get_xlim() == (0.0, 2.0) and 1.0 in ticks
            finally:
                plt.close(fig)


def test_plot_errors():
    with pytest.raises(TypeError, match="LRFindResult"):
        gs.plot.lr_find({"lrs": [1]})
    with pytest.raises(TypeError, match="GradientMonitor"):
        gs.plot.gradients([])
    with pytest.raises(ValueError, match="no records"):
        gs.plot.gradients(D.GradientMonitor())
