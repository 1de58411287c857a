"""Losses (cnnkern.losses): the soft-target cross-entropy in float64 against torch's cross_entropy (label
smoothing, probability targets, per-sample weights) and categorical_crossentropy, sample_weight and
class_weight in fit / evaluate with Keras's semantics."""

import numpy as np
import pytest

from cnnkern import layers, losses, models, ops, optimizers

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
F = torch.nn.functional


def _logits(n=9, c=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c)) * 3


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_torch_cross_entropy(eps):
    """Keras's smoothed one-hot targets through the soft kernel = torch's cross_entropy(label_smoothing)."""
    logits, c = _logits(), 5
    labels = np.random.default_rng(1).integers(0, c, 9)
    t = losses.CategoricalCrossentropy(label_smoothing=eps).targets(np.eye(c)[labels], 9, c)
    loss, probs = ops.softmax_cross_entropy_soft_forward(logits, t, backend="reference")
    d = ops.softmax_cross_entropy_soft_backward(probs, t, backend="reference")
    tl = torch.tensor(logits, requires_grad=True)
    want = F.cross_entropy(tl, torch.tensor(labels), label_smoothing=eps)
    want.backward()
    np.testing.assert_allclose(loss, want.item(), rtol=1e-13)
    np.testing.assert_allclose(d, tl.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_weighted_probability_targets_match_torch():
    """Σ w_n·loss_n / N (Keras's sum over the batch size) with probability targets."""
    logits = _logits(seed=2)
    rng = np.random.default_rng(3)
    t = rng.random((9, 5))
    t /= t.sum(axis=1, keepdims=True)
    w = rng.random(9) * 3
    loss, probs = ops.softmax_cross_entropy_soft_forward(logits, t, w, backend="reference")
    d = ops.softmax_cross_entropy_soft_backward(probs, t, w, backend="reference")
    tl = torch.tensor(logits, requires_grad=True)
    want = (F.cross_entropy(tl, torch.tensor(t), reduction="none") * torch.tensor(w)).sum() / 9
    want.backward()
    np.testing.assert_allclose(loss, want.item(), rtol=1e-13)
    np.testing.assert_allclose(d, tl.grad.numpy(), rtol=1e-12, atol=1e-15)


def _model(loss="sparse_categorical_crossentropy", opt=None, dtype="float64", final="softmax"):
    m = models.Sequential(backend="reference", seed=5, dtype=dtype)
    m.add(layers.Dense(6, activation="relu", input_shape=(4,)))
    m.add(layers.Dense(3, activation=final))
    m.compile(optimizer=opt or optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
    return m


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def test_categorical_one_hot_trains_as_sparse():
    x, y = _data()
    a, b = _model(), _model("categorical_crossentropy")
    ha = a.fit(x, y, batch_size=8, epochs=2, verbose=0)
    hb = b.fit(x, np.eye(3)[y], batch_size=8, epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-12)
    assert ha.history["accuracy"] == hb.history["accuracy"]
    assert b.evaluate(x, np.eye(3)[y]) == pytest.approx(a.evaluate(x, y), rel=1e-12)


def test_categorical_label_smoothing_in_evaluate_matches_torch():
    x, y = _data(seed=4)
    m = _model(losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), final="linear")
    logits = m.predict(x)
    want = F.cross_entropy(torch.tensor(logits), torch.tensor(y), label_smoothing=0.2).item()
    assert m.evaluate(x, np.eye(3)[y], batch_size=7)[0] == pytest.approx(want, rel=1e-12)


def test_categorical_refuses_integer_labels():
    m = _model("categorical_crossentropy")
    x, y = _data()
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        m.fit(x, y, verbose=0)


def test_sample_weight_scales_the_loss_as_keras():
    """Weights 2 everywhere = the unweighted loss doubled: plain SGD then moves as with lr doubled."""
    x, y = _data()
    a, b = _model(opt=optimizers.SGD(0.2)), _model(opt=optimizers.SGD(0.1))
    a.fit(x, y, batch_size=8, epochs=2, verbose=0)
    hb = b.fit(x, y, batch_size=8, epochs=2, verbose=0, sample_weight=np.full(24, 2.0))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
    assert hb.history["loss"][0] > 0


def test_evaluate_sample_weight_is_the_sum_over_the_sample_count():
    x, y = _data(seed=6)
    m = _model(final="linear", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    w = np.random.default_rng(7).random(24) * 2
    per = F.cross_entropy(torch.tensor(m.predict(x)), torch.tensor(y), reduction="none").numpy()
    loss, _ = m.evaluate(x, y, batch_size=5, sample_weight=w)
    assert loss == pytest.approx((w * per).sum() / 24, rel=1e-12)


def test_class_weight_is_a_sample_weight_per_label():
    x, y = _data(seed=8)
    cw = {0: 2.0, 2: 0.5}  # class 1 not listed: weight 1
    a, b = _model(), _model()
    ha = a.fit(x, y, batch_size=8, epochs=2, verbose=0, class_weight=cw)
    hb = b.fit(x, y, batch_size=8, epochs=2, verbose=0, sample_weight=np.array([cw.get(c, 1.0) for c in y]))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert ha.history["loss"] == hb.history["loss"]
    c = _model("categorical_crossentropy")
    hc = c.fit(x, np.eye(3)[y], batch_size=8, epochs=2, verbose=0, class_weight=cw)
    np.testing.assert_allclose(hc.history["loss"], ha.history["loss"], rtol=1e-12)


def test_weights_with_validation_and_shuffle():
    x, y = _data(n=30, seed=9)
    w = np.random.default_rng(10).random(30)
    m = _model()
    h = m.fit(x, y, batch_size=8, epochs=1, verbose=0, sample_weight=w, validation_split=0.2)
    per = F.cross_entropy(torch.tensor(np.log(m.predict(x[24:]))), torch.tensor(y[24:]), reduction="none")
    assert h.history["val_loss"][0] == pytest.approx(float((torch.tensor(w[24:]) * per).sum() / 6), rel=1e-10)


def test_weight_errors():
    x, y = _data()
    m = _model()
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, verbose=0, sample_weight=np.ones(24), class_weight={0: 1.0})
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(24,\)"):
        m.fit(x, y, verbose=0, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        m.evaluate(x, y, sample_weight=np.full(24, np.nan))
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)


def test_loss_config_round_trips():
    for loss in (
        "categorical_crossentropy",
        losses.CategoricalCrossentropy(True, 0.1),
        "sparse_categorical_crossentropy",
    ):
        obj = losses.get(loss)
        assert losses.get(obj.get_config()).get_config() == obj.get_config()


def test_model_file_keeps_the_new_compile_settings(tmp_path):
    from cnnkern import saving, schedules

    opt = optimizers.RMSprop(
        schedules.CosineDecay(0.01, 100, warmup_target=0.1, warmup_steps=5), clipnorm=1.0
    )
    m = _model(losses.CategoricalCrossentropy(label_smoothing=0.1), opt=opt)
    x, y = _data()
    m.fit(x, np.eye(3)[y], batch_size=8, epochs=1, verbose=0)
    m.save(tmp_path / "m.npz")
    back = saving.load_model(tmp_path / "m.npz", backend="reference")
    assert back.get_config() == m.get_config()
    assert back.evaluate(x, np.eye(3)[y]) == pytest.approx(m.evaluate(x, np.eye(3)[y]), rel=1e-12)


def test_train_on_batch_takes_weights():
    x, y = _data()
    a, b = _model(opt=optimizers.SGD(0.2)), _model(opt=optimizers.SGD(0.1))
    la = a.train_on_batch(x, y)
    lb = b.train_on_batch(x, y, sample_weight=np.full(24, 2.0))
    assert lb[0] == pytest.approx(2 * la[0], rel=1e-12) and lb[1] == la[1]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
    c = _model(opt=optimizers.SGD(0.1))
    lc = c.train_on_batch(x, y, class_weight={0: 2.0, 1: 2.0, 2: 2.0})
    assert lc == lb
