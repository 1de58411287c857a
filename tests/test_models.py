"""Sequential: training trajectories on every backend against the float64 reference and PyTorch, compile/fit/
evaluate/predict behaviour, save/load, backends and callbacks."""

import numpy as np
import pytest

import cnnkern
from cnnkern import backends, callbacks, layers, models, optimizers

STEPS = 6
LR = 0.01


def tiny_cnn(backend="reference", dtype="float64", seed=3, optimizer=None):
    """Every trainable layer kind on 8x8x2 inputs: conv (same, no bias) > batch norm > ReLU > max pool >
    conv (valid, relu) > average pool > flatten > dense > leaky ReLU > dense softmax."""
    m = models.Sequential(backend=backend, dtype=dtype, seed=seed)
    m.add(
        layers.Conv2D(
            4, 3, padding="same", use_bias=False, kernel_initializer="he_uniform", input_shape=(8, 8, 2)
        )
    )
    m.add(layers.BatchNormalization(convention="torch"))  # the PyTorch twin's numbers
    m.add(layers.ReLU())
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Conv2D(6, (3, 3), activation="relu"))
    m.add(layers.AveragePooling2D((2, 2)))
    m.add(layers.Flatten())
    m.add(layers.Dense(16))
    m.add(layers.LeakyReLU(negative_slope=0.1))
    m.add(layers.Dense(5, activation="softmax"))
    m.compile(
        optimizer=optimizer or optimizers.Adam(learning_rate=LR),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return m


def batches(n_steps=STEPS, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_steps, batch, 8, 8, 2))
    y = rng.integers(0, 5, (n_steps, batch))
    return x, y


def trajectory(model, dtype):
    """Losses of STEPS training steps alternating between two batches."""
    x, y = batches(2)
    return np.array([model.train_on_batch(x[i % 2].astype(dtype), y[i % 2])[0] for i in range(STEPS)])


def test_trajectory_matches_reference(plain_target):
    """float32 on the backend under test follows the float64 reference's loss, step by step."""
    want = trajectory(tiny_cnn("reference", "float64"), "float64")
    model = tiny_cnn(plain_target.backend, "float32")
    got = trajectory(model, "float32")
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    assert want[-2] < want[0] and want[-1] < want[1]  # and it is learning
    ref = tiny_cnn("reference", "float64")
    trajectory(ref, "float64")
    x, _ = batches(1, 4, seed=9)
    np.testing.assert_allclose(model.predict(x[0].astype("float32")), ref.predict(x[0]), rtol=1e-3, atol=1e-5)


def _torch_twin(model):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6, 16),
        nn.LeakyReLU(0.1),
        nn.Linear(16, 5),
    ).double()
    w = model.get_weights()  # conv0 kernel, bn gamma, beta, mean, var, conv1 kernel, bias, dense..., dense...
    targets = [
        net[0].weight,
        net[1].weight,
        net[1].bias,
        net[1].running_mean,
        net[1].running_var,
        net[4].weight,
        net[4].bias,
        net[8].weight,
        net[8].bias,
        net[10].weight,
        net[10].bias,
    ]
    assert len(w) == len(targets)
    with torch.no_grad():
        for t, a in zip(targets, w):
            assert tuple(t.shape) == a.shape
            t.copy_(torch.from_numpy(a))
    return torch, net


def test_trajectory_matches_pytorch():
    """The float64 reference model and a hand-built PyTorch twin with the same initial weights, data and Adam
    (PyTorch form) take the same steps: losses, batch-norm running statistics and predictions agree."""
    model = tiny_cnn("reference", "float64")
    torch, net = _torch_twin(model)
    opt = torch.optim.Adam(net.parameters(), lr=LR, eps=1e-8)
    x, y = batches(2)
    want = []
    for i in range(STEPS):
        xb = torch.from_numpy(np.ascontiguousarray(x[i % 2].transpose(0, 3, 1, 2)))
        loss = torch.nn.functional.cross_entropy(net(xb), torch.from_numpy(y[i % 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        want.append(loss.item())
    got = trajectory(model, "float64")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    bn = model.layers[1].state
    np.testing.assert_allclose(bn["moving_mean"], net[1].running_mean.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn["moving_variance"], net[1].running_var.numpy(), rtol=1e-10, atol=1e-12)
    net.eval()
    xt, _ = batches(1, 5, seed=4)
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(np.ascontiguousarray(xt[0].transpose(0, 3, 1, 2)))), 1)
    np.testing.assert_allclose(model.predict(xt[0]), probs.numpy(), rtol=1e-9, atol=1e-12)


def test_sgd_momentum_matches_pytorch():
    model = tiny_cnn(
        "reference",
        "float64",
        optimizer=optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    )
    torch, net = _torch_twin(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    x, y = batches(2)
    want = []
    for i in range(STEPS):
        loss = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(np.ascontiguousarray(x[i % 2].transpose(0, 3, 1, 2)))),
            torch.from_numpy(y[i % 2]),
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        want.append(loss.item())
    np.testing.assert_allclose(trajectory(model, "float64"), want, rtol=1e-10, atol=1e-12)


def test_adam_keras_epsilon_mode():
    """eps_mode='keras' (eps 1e-7 before the bias correction) steps differently from the torch form, and
    equals the torch form with eps scaled by sqrt(1 - beta_2^t) on the first step."""
    a = optimizers.Adam(eps_mode="keras")
    assert a.epsilon == 1e-7 and optimizers.Adam().epsilon == 1e-8
    x, y = batches(1)
    big = 0.5  # a large epsilon makes the two placements visibly different
    m1 = tiny_cnn(optimizer=optimizers.Adam(learning_rate=LR, epsilon=big, eps_mode="keras"))
    m2 = tiny_cnn(
        optimizer=optimizers.Adam(learning_rate=LR, epsilon=big / np.sqrt(1 - 0.999), eps_mode="torch")
    )
    m3 = tiny_cnn(optimizer=optimizers.Adam(learning_rate=LR, epsilon=big, eps_mode="torch"))
    for m in (m1, m2, m3):
        m.train_on_batch(x[0], y[0])
    w1, w2, w3 = (m.get_weights()[0] for m in (m1, m2, m3))
    np.testing.assert_allclose(w1, w2, rtol=1e-12)
    assert np.abs(w1 - w3).max() > 1e-4


def test_gradients_match_finite_differences():
    """Every layer's backward, wired through the model, against central differences of the float64 loss."""
    model = tiny_cnn("reference", "float64", seed=5)
    x, y = batches(1, 6, seed=2)
    X, Y = model._to_internal(x[0]), model._labels(y[0], 6)
    model._gradients(X, Y)
    h = 1e-6
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for name, p in layer.params.items():
            g = layer.grads[name]
            for flat in rng.choice(p.size, min(p.size, 5), replace=False):
                i = np.unravel_index(flat, p.shape)
                old = p[i]
                p[i] = old + h
                up = float(model._loss_and_probs(X, Y, training=True)[0])
                p[i] = old - h
                down = float(model._loss_and_probs(X, Y, training=True)[0])
                p[i] = old
                assert g[i] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8), (layer.name, name, i)


def test_fused_softmax_loss_is_stable():
    """Huge logits: the loss stays finite (fused log-softmax), predict still gives probabilities."""
    m = models.Sequential(
        [layers.Dense(3, activation="softmax", input_shape=(2,))], backend="reference", dtype="float64"
    )
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.set_weights([np.array([[1000.0, 0], [-1000.0, 0], [0, 0]]), np.zeros(3)])
    loss, acc = m.evaluate(np.array([[1.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0) and acc == 0.0
    np.testing.assert_allclose(m.predict(np.array([[1.0, 0.0]])), [[1.0, 0.0, 0.0]])


def test_from_logits_loss():
    m = models.Sequential([layers.Dense(3, input_shape=(2,))], backend="reference", dtype="float64")
    m.compile(loss=models.SparseCategoricalCrossentropy(from_logits=True))
    m.set_weights([np.array([[1.0, 0], [0, 1.0], [0, 0]]), np.zeros(3)])
    x = np.array([[2.0, 1.0]])
    np.testing.assert_allclose(m.predict(x), [[2.0, 1.0, 0.0]])  # logits, as Keras
    want = -np.log(np.exp(2.0) / np.exp([2.0, 1.0, 0.0]).sum())
    assert m.evaluate(x, np.array([0])) == pytest.approx(want)


def test_compile_errors():
    m = models.Sequential([layers.Dense(3, input_shape=(2,))])
    with pytest.raises(ValueError, match="activation 'softmax'"):
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(2,))])
    with pytest.raises(ValueError, match="metrics"):
        m.compile(metrics=["mse"])
    with pytest.raises(ValueError, match="optimizer"):
        m.compile(optimizer="adagrad")
    with pytest.raises(ValueError, match="loss"):
        m.compile(loss="mse")
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(np.zeros((2, 2)), np.zeros(2, int))
    with pytest.raises(ValueError, match="backend must be one of"):
        models.Sequential(backend="tpu")


def test_data_errors():
    m = tiny_cnn()
    x, y = batches(1)
    with pytest.raises(ValueError, match=r"x\[\.\.\., None\]"):
        m.fit(x[0][..., 0], y[0], verbose=0)
    with pytest.raises(IndexError, match="class 5"):
        m.fit(x[0], np.full(8, 5), verbose=0)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        m.fit(x[0], y[0][:7], verbose=0)
    with pytest.raises(TypeError, match="integer class labels"):
        m.fit(x[0], y[0] + 0.5, verbose=0)


def test_fit_history_validation_and_evaluate():
    m = tiny_cnn()
    x, y = batches(4, 8)
    x, y = x.reshape(32, 8, 8, 2), y.reshape(32)
    h = m.fit(x, y, epochs=3, batch_size=5, validation_split=0.25, verbose=0)
    assert isinstance(h, callbacks.History) and h.epoch == [0, 1, 2]
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert len(h.images_per_second) == 3 and min(h.images_per_second) > 0
    loss, acc = m.evaluate(x[24:], y[24:], batch_size=3)
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-12)
    assert acc == pytest.approx(h.history["val_accuracy"][-1])
    assert m.evaluate(x[24:], y[24:], return_dict=True) == {"loss": pytest.approx(loss), "accuracy": acc}
    p = m.predict(x[:7], batch_size=3)
    assert p.shape == (7, 5) and np.allclose(p.sum(axis=1), 1.0)


def test_fit_prints_progress(capsys):
    m = tiny_cnn()
    x, y = batches(2, 8)
    m.fit(x.reshape(16, 8, 8, 2), y.reshape(16), epochs=2, batch_size=8, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "loss:" in out and "accuracy:" in out and "img/s" in out


def test_seed_makes_runs_reproducible():
    a, b, c = tiny_cnn(seed=7), tiny_cnn(seed=7), tiny_cnn(seed=8)
    for w1, w2 in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    x, y = batches(2, 8)
    ha = a.fit(x.reshape(16, 8, 8, 2), y.reshape(16), epochs=2, batch_size=4, verbose=0)
    hb = b.fit(x.reshape(16, 8, 8, 2), y.reshape(16), epochs=2, batch_size=4, verbose=0)
    assert ha.history == hb.history


def test_save_load_round_trip(plain_target, tmp_path):
    m = tiny_cnn(plain_target.backend, "float32")
    x, y = batches(2, 8)
    m.fit(x.reshape(16, 8, 8, 2).astype("float32"), y.reshape(16), epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.weights"  # saved at exactly this path, whatever the suffix
    m.save(path)
    loaded = models.load_model(path, backend=plain_target.backend)
    assert loaded.backend.name == plain_target.name
    assert [type(l) for l in loaded.layers] == [type(l) for l in m.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in m.layers]
    xt = batches(1, 5, seed=3)[0][0].astype("float32")
    np.testing.assert_array_equal(loaded.predict(xt), m.predict(xt))
    assert loaded.compiled and loaded.optimizer.get_config() == m.optimizer.get_config()
    assert loaded.evaluate(xt, [0, 1, 2, 3, 4]) == m.evaluate(xt, [0, 1, 2, 3, 4])


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a saved cnnkern model"):
        models.load_model(bad)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(ValueError, match="no __architecture__"):
        models.load_model(plain)


def test_to_backend_keeps_predictions(plain_target):
    m = tiny_cnn("reference", "float32")
    x, y = batches(1, 8)
    m.train_on_batch(x[0].astype("float32"), y[0])
    want = m.predict(x[0].astype("float32"))
    m.to_backend(plain_target.backend)
    assert m.backend is plain_target.backend
    np.testing.assert_allclose(m.predict(x[0].astype("float32")), want, rtol=1e-4, atol=1e-6)
    m.train_on_batch(x[0].astype("float32"), y[0])  # the optimizer state moved too


def test_backend_selection(monkeypatch, restore_default_backend):
    monkeypatch.setenv("CNNKERN_BACKEND", "reference")
    assert models.Sequential().backend.name == "reference"
    monkeypatch.delenv("CNNKERN_BACKEND")
    cnnkern.set_backend("reference")
    m = models.Sequential([layers.Dense(2, activation="softmax", input_shape=(3,))])
    m.build()
    assert m.backend.name == "reference"
    m = models.Sequential([layers.Dense(2, activation="softmax", input_shape=(3,))], dtype="float64")
    m.compile(backend="reference")
    m.build()
    assert m.backend.name == "reference" and m.get_weights()[0].dtype == np.float64
    unavailable = [n for n in backends.NAMES if backends.probe(n) is not None]
    if not unavailable:
        pytest.skip("every backend is available here, so none can be asked for in vain")
    m = models.Sequential([layers.Dense(2, activation="softmax", input_shape=(3,))], backend=unavailable[0])
    with pytest.raises(cnnkern.BackendUnavailableError, match=unavailable[0]):
        m.build()


def test_float64_needs_a_float64_backend():
    no64 = [n for n in backends.available() if "float64" not in backends.get(n).dtypes]
    if not no64:
        pytest.skip("every available backend runs float64")
    m = models.Sequential(
        [layers.Dense(2, activation="softmax", input_shape=(3,))], backend=no64[0], dtype="float64"
    )
    with pytest.raises(ValueError, match="float64"):
        m.build()


def test_summary_of_the_classic_cnn():
    from cnnkern.cli import classic_cnn

    lines = []
    classic_cnn(backend="reference").summary(print_fn=lines.append)
    text = "\n".join(lines)
    for row in (
        "conv2d (Conv2D)",
        "(None, 26, 26, 32)",
        "320",
        "max_pooling2d (MaxPooling2D)",
        "(None, 13, 13, 32)",
        "conv2d_1 (Conv2D)",
        "(None, 11, 11, 64)",
        "18,496",
        "(None, 5, 5, 64)",
        "conv2d_2 (Conv2D)",
        "(None, 3, 3, 64)",
        "36,928",
        "flatten (Flatten)",
        "(None, 576)",
        "dense (Dense)",
        "(None, 64)",
        "dense_1 (Dense)",
        "(None, 10)",
        "650",
        "Total params: 93,322",
        "Trainable params: 93,322",
        "Non-trainable params: 0",
    ):
        assert row in text, row


def test_summary_counts_batch_norm_state_as_non_trainable():
    lines = []
    tiny_cnn().summary(print_fn=lines.append)
    text = "\n".join(lines)
    # conv 4*2*9=72, bn 4+4 trainable + 8 state, conv 6*4*9+6=222, dense 6*16+16=112, dense 16*5+5=85
    assert (
        "Total params: 507" in text and "Trainable params: 499" in text and "Non-trainable params: 8" in text
    )


def test_early_stopping_and_restore_best_weights():
    m = tiny_cnn()
    x, y = batches(2, 8)
    x, y = x.reshape(16, 8, 8, 2), y.reshape(16)
    seen = []

    class Record(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.get_weights())

    # training loss falls every epoch, so in 'max' mode the first epoch stays the best
    stop = callbacks.EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True)
    h = m.fit(x, y, epochs=20, batch_size=16, shuffle=False, callbacks=[Record(), stop], verbose=0)
    assert h.epoch == [0, 1, 2] and stop.stopped_epoch == 2 and stop.best_epoch == 0
    for w, best in zip(m.get_weights(), seen[0]):
        np.testing.assert_array_equal(w, best)
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="up")


def test_progress_bar_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    bar = callbacks.ProgressBar(verbose=1, file=screen)
    m = tiny_cnn()
    x, y = batches(2, 8)
    m.fit(x.reshape(16, 8, 8, 2), y.reshape(16), epochs=1, batch_size=4, verbose=0, callbacks=[bar])
    text = screen.getvalue()
    assert text.startswith("Epoch 1/1\n") and "\r4/4 [==============================]" in text
    assert "loss: " in text and "accuracy: " in text and "img/s" in text


def test_set_weights_copies_the_callers_arrays():
    """As in Keras, training after set_weights leaves the arrays that were passed in unchanged."""
    m = tiny_cnn()
    given = [np.array(w, copy=True) for w in m.get_weights()]
    m.set_weights(given)
    before = [w.copy() for w in given]
    x, y = batches(1)
    m.train_on_batch(x[0], y[0])
    for i, (g, b) in enumerate(zip(given, before)):
        np.testing.assert_array_equal(g, b, err_msg=f"weight {i} was modified by training")
    assert any(not np.array_equal(w, b) for w, b in zip(m.get_weights(), before)), "training changed nothing"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_max_pool_applies_the_activation_gradient_of_the_layer_before(plain_target, activation):
    """A max pool right after an activation layer takes its gradient (ops.maxpool2d_act_backward), and the
    gradients equal those of the unfused path (pool backward, then the activation's own backward). tanh's
    gradient is not idempotent, so applying it twice (or never) would show. (A pool right after a Conv2D runs
    fused with it instead: tests/test_fused_conv_pool.py.)"""
    dtype = plain_target.backend.dtypes[0]
    model = models.Sequential(backend=plain_target.backend, dtype=dtype, seed=5)
    model.add(layers.Conv2D(4, 3, input_shape=(8, 8, 2)))
    model.add(layers.Activation(activation))
    model.add(layers.MaxPooling2D(2, strides=1))  # overlapping windows: the scatter accumulates
    model.add(layers.Flatten())
    model.add(layers.Dense(5, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.build()
    steps = model._plan.steps
    # conv + activation run as one step (conv_act); the pool after it takes the activation's gradient
    assert steps[0].kind == "conv_act" and steps[1].layers == (model.layers[2],)
    assert steps[1].act_from is model.layers[1]
    x, y = batches(1)
    xb, yb = model._to_internal(x[0].astype(dtype)), model._labels(y[0], len(y[0]))
    grads = []
    for pool_act in (True, False):
        model._plan = model._chain_plan(pool_act=pool_act)
        model._gradients(xb, yb)
        grads.append([np.array(plain_target.get(g)) for layer in model.layers for g in layer.grads.values()])
    assert len(grads[0]) == len(grads[1]) == 4
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
