"""Layer-wise autoencoder pre-training: gs.pretrain.autoencoders, gs.Autoencoder, gs.TiedDense."""
from __future__ import annotations

import numpy as np
import pytest

import gradstep as gs
from gradstep import autoencoder as ae_module


def _deep(seed=0, act=gs.Sigmoid, sizes=(12, 10, 8, 6, 3), dtype="float32"):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [gs.Dense(a, b, init="normal"), act()]
    layers.append(gs.Dense(sizes[-2], sizes[-1], init="normal"))
    return gs.Sequential(layers, seed=seed, dtype=dtype)


def _data01(n=120, d=12, k=3, seed=0):
    """Inputs in [0, 1] with low-rank structure (k latent factors), so an autoencoder can learn them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    return (1 / (1 + np.exp(-(z @ rng.normal(size=(k, d)) * 2)))).astype(np.float32)


def _eval_forward(layers, x):
    for layer in layers:
        x = layer.forward(x, training=False)
    return x


# ---- greedy order --------------------------------------------------------------------------------
def test_each_layer_is_trained_on_the_outputs_of_the_pretrained_layers_before_it(monkeypatch):
    X = _data01()
    model = _deep()
    before = model.state_dict()
    seen = []
    original_fit = gs.Autoencoder.fit

    def recording_fit(self, Xk, *args, **kwargs):
        seen.append(np.array(Xk, copy=True))
        return original_fit(self, Xk, *args, **kwargs)

    monkeypatch.setattr(gs.Autoencoder, "fit", recording_fit)
    result = gs.pretrain.autoencoders(model, X, epochs=2, seed=0, verbose=0)
    assert result.layers == [0, 2, 4]  # every Dense but the output layer, in order
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[0], X)
    for k, index in enumerate(result.layers):
        # the final weights of layers < index are the pre-trained ones: they are not touched later
        np.testing.assert_allclose(seen[k], _eval_forward(model.layers[:index], X), rtol=1e-6, atol=1e-7)
    # ... and they are not the initial weights: layer 2 saw layer 0 as pre-trained, not as it started
    fresh = _deep()
    fresh.load_state_dict(before)
    assert not np.allclose(seen[1], _eval_forward(fresh.layers[:2], X), atol=1e-5)
    # the output layer is left as it was
    np.testing.assert_array_equal(model.layers[6].params["weight"], before["6.weight"])


def test_layers_selects_hidden_dense_layers():
    X = _data01()
    model = _deep()
    before = model.state_dict()
    result = gs.pretrain.autoencoders(model, X, epochs=1, layers=[2], seed=0, verbose=0)
    assert result.layers == [2]
    after = model.state_dict()
    np.testing.assert_array_equal(after["0.weight"], before["0.weight"])
    assert not np.array_equal(after["2.weight"], before["2.weight"])


# ---- the model keeps the encoders' weights ---------------------------------------------------------
def test_model_after_pretrain_equals_one_built_from_the_stored_weights(tmp_path):
    X = _data01()
    model = _deep()
    result = gs.pretrain.autoencoders(model, X, epochs=3, seed=1, verbose=0)
    rebuilt = _deep(seed=123)  # other random weights, then the pre-trained ones from the autoencoders
    state = rebuilt.state_dict()
    for index, ae in zip(result.layers, result.autoencoders):
        enc = ae.encoder_layers[0]
        state[f"{index}.weight"] = enc.params["weight"]
        state[f"{index}.bias"] = enc.params["bias"]
    state["6.weight"], state["6.bias"] = model.layers[6].params["weight"], model.layers[6].params["bias"]
    rebuilt.load_state_dict(state)
    np.testing.assert_array_equal(rebuilt.predict(X), model.predict(X))
    # each autoencoder's codes are the model's hidden activations at that depth
    np.testing.assert_array_equal(result.autoencoders[0].encode(X), _eval_forward(model.layers[:2], X))
    path = tmp_path / "pre.safetensors"
    model.save(path)
    np.testing.assert_array_equal(gs.load(path).predict(X), model.predict(X))


def test_pretrained_model_fine_tunes_with_the_fused_engine():
    X = _data01()
    y = (X[:, 0] > X[:, 0].mean()).astype(np.int64) + (X[:, 1] > X[:, 1].mean())
    model = _deep()
    gs.pretrain.autoencoders(model, X, epochs=2, seed=0, verbose=0)
    model.compile(loss=gs.SoftmaxCrossEntropy(), optimizer=gs.Adam(lr=1e-2))
    h = model.fit(X, y, epochs=3, verbose=0, seed=0)
    assert model._engine  # the pre-trained model is an ordinary Sequential
    assert np.isfinite(h["loss"]).all()


# ---- reconstruction --------------------------------------------------------------------------------
def test_reconstruction_loss_decreases_on_low_rank_data():
    X = _data01(n=200)
    model = gs.Sequential([gs.Dense(12, 6, init="xavier"), gs.Sigmoid(), gs.Dense(6, 2)], seed=0)
    result = gs.pretrain.autoencoders(model, X, epochs=30, optimizer=gs.Adam(lr=1e-2), seed=0, verbose=0)
    curve = result.losses[0]
    assert result.loss_names == ["binary_crossentropy"]  # the inputs lie in [0, 1]
    assert len(curve) == 30 and curve[-1] < curve[0]
    # better than the best constant reconstruction (each feature's mean): BCE = mean entropy
    p = X.mean(axis=0).astype(np.float64)
    constant = -np.mean(X * np.log(p) + (1 - X) * np.log(1 - p))
    assert result.final_losses[0] < constant - 0.02
    assert "binary_crossentropy" in result.table() and "12 -> 6" in result.table()


def test_loss_is_mse_outside_unit_interval_and_overridable():
    X01 = _data01()
    Xs = (X01 - 0.5) * 4
    m = gs.Sequential([gs.Dense(12, 5), gs.Tanh(), gs.Dense(5, 2)], seed=0)
    assert gs.pretrain.autoencoders(m, Xs, epochs=1, seed=0, verbose=0).loss_names == ["mse"]
    assert gs.pretrain.autoencoders(m, X01, epochs=1, seed=0, verbose=0, loss="mse").loss_names == ["mse"]
    with pytest.raises(ValueError, match="loss"):
        gs.pretrain.autoencoders(m, Xs, epochs=1, seed=0, verbose=0, loss="binary_crossentropy")


def test_autoencoder_model_fit_encode_decode_reconstruct():
    X = _data01(n=200)
    ae = gs.Autoencoder([gs.Dense(12, 4, init="xavier"), gs.Sigmoid()], seed=0)
    ae.compile(optimizer=gs.Adam(lr=1e-2))
    ae.fit(X, epochs=1, verbose=0, seed=0)
    start = ae.reconstruction_error(X)
    h = ae.fit(X, epochs=40, verbose=0, seed=0)
    assert ae.reconstruction_error(X) < start and h["loss"][-1] < h["loss"][0]
    codes = ae.encode(X)
    assert codes.shape == (200, 4) and np.all((codes > 0) & (codes < 1))
    R = ae.reconstruct(X)
    assert R.shape == X.shape and np.all((R >= 0) & (R <= 1))  # decode applies the sigmoid to the logits
    np.testing.assert_array_equal(R, ae.decode(codes))
    assert ae.model._engine  # an untied autoencoder trains on the fused whole-step engine


def test_fused_and_layer_by_layer_training_agree_bit_for_bit():
    X = _data01()
    runs = []
    for use_engine in (True, False):
        ae = gs.Autoencoder([gs.Dense(12, 5), gs.Tanh()], seed=3)
        ae.compile(loss="mse", optimizer=gs.SGD(lr=0.1, momentum=0.9))
        ae.model.use_engine = use_engine
        ae.fit(X, epochs=2, noise=0.2, verbose=0, seed=4)
        runs.append(ae.model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_multi_layer_encoder_mirrors_its_activations():
    ae = gs.Autoencoder([gs.Dense(12, 8), gs.Tanh(), gs.Dense(8, 3), gs.Tanh()])
    kinds = [type(l).__name__ for l in ae.decoder_layers]
    assert kinds == ["Dense", "Tanh", "Dense"]
    assert ae.decoder_layers[0].in_features == 3 and ae.decoder_layers[-1].out_features == 12


# ---- tied decoder ----------------------------------------------------------------------------------
def test_tied_decoder_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    enc = gs.Dense(5, 3, l2=0.1, dtype="float64", seed=1)
    tied = gs.TiedDense(enc)
    model = gs.Sequential([enc, gs.Tanh(), tied], dtype="float64")
    model.layers[2].params["bias"][...] = rng.normal(size=5)
    enc.params["bias"][...] = rng.normal(size=3)
    x = rng.normal(size=(7, 5))
    target = rng.normal(size=(7, 5))
    loss = gs.MSE()

    def objective():
        return loss.forward(model.forward(x, training=True), target) + model.penalty()

    objective()
    model.backward(loss.backward())
    analytic = {p.name: p.grad.copy() for p in model.parameters()}
    assert set(analytic) == {"0.weight", "0.bias", "2.bias"}  # the weight is one parameter, shared
    eps = 1e-6
    for p in model.parameters():
        numeric = np.zeros_like(p.value)
        for idx in np.ndindex(p.value.shape):
            old = p.value[idx]
            p.value[idx] = old + eps
            up = objective()
            p.value[idx] = old - eps
            down = objective()
            p.value[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        err = np.max(np.abs(numeric - analytic[p.name]) / np.maximum(1e-8, np.abs(numeric) + np.abs(analytic[p.name])))
        assert err < 1e-6, (p.name, err)
    # the decoder's part really is in the weight gradient (not only the encoder's)
    objective()
    model.layers[0].backward(model.layers[1].backward(tied.backward(loss.backward())))
    assert not np.allclose(model.layers[0].grads["weight"], analytic["0.weight"])


def test_tied_decoder_uses_the_encoders_current_weight_transposed():
    enc = gs.Dense(6, 4, seed=0)
    tied = gs.TiedDense(enc)
    h = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(tied.forward(h), h @ enc.params["weight"].T, rtol=1e-6, atol=1e-6)
    enc.params["weight"][...] *= 2
    np.testing.assert_allclose(tied.forward(h), h @ enc.params["weight"].T, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="encoder"):
        gs.TiedDense(gs.Sigmoid())


def test_tied_pretraining_trains_and_keeps_one_weight():
    X = _data01(n=200)
    model = gs.Sequential([gs.Dense(12, 6, init="xavier"), gs.Sigmoid(), gs.Dense(6, 2)], seed=0)
    result = gs.pretrain.autoencoders(model, X, epochs=20, tied=True, optimizer=gs.Adam(lr=1e-2), seed=0, verbose=0)
    ae = result.autoencoders[0]
    assert isinstance(ae.decoder_layers[0], gs.TiedDense)
    assert len(ae.model.parameters()) == 3  # encoder weight and bias, decoder bias
    assert result.losses[0][-1] < result.losses[0][0]
    np.testing.assert_array_equal(model.layers[0].params["weight"], ae.encoder_layers[0].params["weight"])


# ---- denoising -----------------------------------------------------------------------------------
def test_corruption_is_seeded_and_has_the_asked_strength():
    x = np.ones((400, 50), np.float32)
    a = ae_module.corrupt(x, 0.3, "mask", np.random.default_rng(5))
    b = ae_module.corrupt(x, 0.3, "mask", np.random.default_rng(5))
    c = ae_module.corrupt(x, 0.3, "mask", np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {0.0, 1.0} and abs((a == 0).mean() - 0.3) < 0.02
    g = ae_module.corrupt(x, 0.5, "gaussian", np.random.default_rng(5))
    assert g.dtype == np.float32 and abs(float((g - 1).std()) - 0.5) < 0.02
    assert ae_module.corrupt(x, 0.0, "mask", np.random.default_rng(5)) is x


def test_denoising_corrupts_training_inputs_only_and_is_reproducible(monkeypatch):
    X = _data01()
    seen = []
    original = gs.Sequential.train_step

    def recording_step(self, xb, yb):
        seen.append((np.array(xb), np.array(yb)))
        return original(self, xb, yb)

    monkeypatch.setattr(gs.Sequential, "train_step", recording_step)
    ae = gs.Autoencoder([gs.Dense(12, 4), gs.Sigmoid()], seed=0)
    ae.compile(optimizer=gs.Adam(lr=1e-2))
    ae.fit(X, epochs=2, noise=0.5, verbose=0, seed=7)
    inputs = np.concatenate([s[0] for s in seen])
    targets = np.concatenate([s[1] for s in seen])
    assert np.all(targets > 0)  # clean targets (the data has no zeros)
    zeroed = inputs == 0
    assert abs(zeroed.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(inputs[~zeroed], targets[~zeroed])
    monkeypatch.setattr(gs.Sequential, "train_step", original)
    # evaluation mode sees the clean input: encoding is deterministic and equals the plain forward
    np.testing.assert_array_equal(ae.encode(X), ae.encode(X))
    np.testing.assert_array_equal(ae.encode(X), _eval_forward(ae.encoder_layers, X))
    # the same seed gives the same pre-trained model; another seed another one
    runs = []
    for seed in (1, 1, 2):
        model = _deep(seed=0)
        gs.pretrain.autoencoders(model, X, epochs=2, noise=0.3, seed=seed, verbose=0)
        runs.append(model.state_dict()["0.weight"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_gaussian_noise_trains():
    X = _data01()
    model = _deep()
    result = gs.pretrain.autoencoders(model, X, epochs=2, noise=0.1, noise_kind="gaussian", seed=0, verbose=0)
    assert all(np.isfinite(c).all() for c in result.losses)


# ---- bad arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"noise": 1.0}, "noise"), ({"noise": -0.1}, "noise"), ({"noise": 1.5}, "noise"),
    ({"noise": -1.0, "noise_kind": "gaussian"}, "noise"), ({"noise_kind": "salt"}, "noise_kind"),
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"layers": [1]}, "layers"),
    ({"layers": [6]}, "layers"), ({"layers": []}, "layers"), ({"loss": "hinge"}, "loss"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gs.pretrain.autoencoders(_deep(), _data01(), verbose=0, **kwargs)


def test_no_hidden_layer_to_pretrain():
    model = gs.Sequential([gs.Dense(12, 3), gs.Sigmoid()])
    with pytest.raises(ValueError, match="model has no hidden Dense layer"):
        gs.pretrain.autoencoders(model, _data01(), verbose=0)


def test_bad_data_and_types():
    with pytest.raises(TypeError, match="model"):
        gs.pretrain.autoencoders([gs.Dense(2, 2)], np.zeros((3, 2)))
    X = _data01()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gs.pretrain.autoencoders(_deep(), X, verbose=0)
    with pytest.raises(ValueError, match="features"):
        gs.pretrain.autoencoders(_deep(), np.zeros((5, 7)), verbose=0)
    with pytest.raises(ValueError, match="noise"):
        gs.Autoencoder([gs.Dense(12, 3)]).compile().fit(_data01(), noise=1.0, verbose=0)
    with pytest.raises(ValueError, match="compile"):
        gs.Autoencoder([gs.Dense(12, 3)]).fit(_data01(), verbose=0)
    with pytest.raises(ValueError, match="tied"):
        gs.Autoencoder([gs.Dense(12, 3)], [gs.Dense(3, 12)], tied=True)
    with pytest.raises(ValueError, match="decoder"):
        gs.Autoencoder([gs.Dense(12, 3)], [gs.Dense(3, 10)])


def test_plot_pretrain_writes_a_png(tmp_path):
    result = gs.pretrain.autoencoders(_deep(), _data01(), epochs=2, seed=0, verbose=0)
    path = tmp_path / "pre.png"
    gs.plot.pretrain(result, path)
    assert path.stat().st_size > 1000
    with pytest.raises(TypeError, match="PretrainResult"):
        gs.plot.pretrain({"losses": []})


def test_a_width_changing_layer_after_the_dense_is_part_of_its_block():
    X = _data01()
    model = gs.Sequential([gs.Dense(12, 9), gs.Maxout(9, 4, 3), gs.Dense(4, 2)], seed=0)
    before = model.state_dict()
    result = gs.pretrain.autoencoders(model, X, epochs=2, seed=0, verbose=0)
    decoder = result.autoencoders[0].decoder_layers[0]
    assert (decoder.in_features, decoder.out_features) == (4, 12)
    after = model.state_dict()
    assert not np.array_equal(after["1.weight"], before["1.weight"])  # the Maxout was trained and kept too
    with pytest.raises(ValueError, match="tied"):
        gs.pretrain.autoencoders(model, X, epochs=1, tied=True, verbose=0)


def test_pretraining_rescues_a_deep_sigmoid_net_with_small_weights():
    """The point of it (the README's example, smaller): from N(0, 0.01²) weights, 4 sigmoid layers
    pass almost no gradient to the first; after pre-training the same budget of SGD fine-tuning
    drives the loss far below chance, and the first layer's gradient is orders of magnitude larger."""
    X, y = gs.datasets.load_digits()
    X, y = X[:600] / 16.0, y[:600]
    losses, first_grad = {}, {}
    for pre in (False, True):
        layers = [gs.Dense(64, 32, init="normal"), gs.Sigmoid()]
        for _ in range(3):
            layers += [gs.Dense(32, 32, init="normal"), gs.Sigmoid()]
        model = gs.Sequential(layers + [gs.Dense(32, 10, init="normal")], seed=0)
        if pre:
            gs.pretrain.autoencoders(model, X, seed=0, verbose=0)  # the defaults: 10 epochs, Adam 1e-2
        model.compile(gs.SoftmaxCrossEntropy(), gs.SGD(lr=0.05, momentum=0.9))
        monitor = gs.callbacks.GradientMonitor()
        losses[pre] = model.fit(X, y, epochs=15, callbacks=[monitor], verbose=0, seed=0)["loss"][-1]
        first_grad[pre] = monitor.initial_record["layers"]["0.Dense"]["grad_norm"]
    assert losses[False] > 2.2  # stuck near ln 10
    assert losses[True] < 1.0
    assert first_grad[True] > 100 * first_grad[False]


def test_the_models_preprocessing_is_applied_as_fit_applies_it(monkeypatch):
    X = _data01() * 16 + 3
    model = _deep()
    model.preprocessing = gs.Standardize.fit(X)
    seen = []
    original_fit = gs.Autoencoder.fit

    def recording_fit(self, Xk, *args, **kwargs):
        seen.append(np.array(Xk, copy=True))
        return original_fit(self, Xk, *args, **kwargs)

    monkeypatch.setattr(gs.Autoencoder, "fit", recording_fit)
    result = gs.pretrain.autoencoders(model, X, epochs=1, layers=[0], seed=0, verbose=0)
    np.testing.assert_allclose(seen[0], model.preprocessing.transform(X), rtol=1e-6, atol=1e-6)
    assert result.loss_names == ["mse"]  # standardized inputs are not in [0, 1]


# ---- command line ----------------------------------------------------------------------------------
def test_cli_train_pretrain(tmp_path, monkeypatch, capsys):
    from gradstep import cli
    monkeypatch.chdir(tmp_path)
    common = ["train", "--layers", "16,16", "--activation", "sigmoid", "--epochs", "1", "--quiet", "--plot", "",
              "--threads", "1"]
    assert cli.main(common + ["--pretrain", "2", "--pretrain-noise", "0.2", "--out", "pre.safetensors"]) == 0
    out = capsys.readouterr().out
    assert "pre-trained the hidden layers as autoencoders (2 epochs each)" in out
    assert "64 -> 16" in out and "16 -> 16" in out
    assert cli.main(common + ["--out", "plain.safetensors"]) == 0
    capsys.readouterr()
    # same seed, same split and fit: only the pre-training differs
    assert not np.array_equal(gs.load("pre.safetensors").layers[0].params["weight"],
                              gs.load("plain.safetensors").layers[0].params["weight"])
    assert cli.main(common + ["--pretrain-noise", "0.2"]) == 2
    assert "--pretrain EPOCHS" in capsys.readouterr().err
    assert cli.main(common + ["--pretrain", "-1"]) == 2
    assert cli.main(common + ["--pretrain", "1", "--pretrain-noise", "1.0"]) == 2


def test_autoencoder_save_and_load(tmp_path):
    X = _data01()
    ae = gs.Autoencoder([gs.Dense(12, 5), gs.Sigmoid()], seed=0)
    ae.compile(optimizer=gs.Adam(lr=1e-2))
    ae.fit(X, epochs=2, verbose=0, seed=0)
    path = tmp_path / "ae.safetensors"
    ae.save(path)
    back = gs.Autoencoder.load(path)
    np.testing.assert_array_equal(back.encode(X), ae.encode(X))
    np.testing.assert_array_equal(back.reconstruct(X), ae.reconstruct(X))  # the sigmoid on the logits too
    back.fit(X, epochs=1, verbose=0, seed=1)  # trains on, with the saved optimizer state
    ae.fit(X, epochs=1, verbose=0, seed=1)
    np.testing.assert_array_equal(back.encode(X), ae.encode(X))
    plain = tmp_path / "plain.safetensors"
    _deep().save(plain)
    with pytest.raises(ValueError, match="not an autoencoder"):
        gs.Autoencoder.load(plain)
    tied = gs.Autoencoder([gs.Dense(12, 5), gs.Sigmoid()], tied=True)
    with pytest.raises(NotImplementedError, match="tied"):
        tied.save(tmp_path / "tied.safetensors")
