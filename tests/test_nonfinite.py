"""Issue 12 item 12: NaN / Inf never pass silently. predict / evaluate / fit refuse non-finite inputs naming
the argument and the first bad sample; fit stops at the first non-finite loss or gradient with
NonFiniteLossError naming the epoch and step, the weights, batch-norm statistics and optimizer state left
as they were after the previous step; stop_on_nonfinite=False trains on (and says nothing)."""

import numpy as np
import pytest

from cnnkern import callbacks, layers, models, optimizers
from cnnkern.errors import NonFiniteInputError, NonFiniteLossError

from .conftest import load_backend

# These tests drive NaN and inf through the reference backend on purpose (NumPy warns on overflow and invalid
# operations; the kernels' IEEE results are the point, docs/design.md §3).
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]


@pytest.fixture(params=["reference", "cpp"])
def backend(request):
    return load_backend(request.param)


def small_model(backend, optimizer=None, seed=1):
    m = models.Sequential(backend=backend, seed=seed)
    m.add(layers.Conv2D(3, 3, padding="same", input_shape=(6, 6, 1)))
    m.add(layers.BatchNormalization())
    m.add(layers.ReLU())
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.25))
    m.add(layers.Dense(4, activation="softmax"))
    m.compile(optimizer=optimizer or optimizers.Adam(1e-2), metrics=["accuracy"])
    return m


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 6, 1)).astype(np.float32), rng.integers(0, 4, n)


def test_the_errors_are_in_the_standard_hierarchy():
    assert issubclass(NonFiniteLossError, FloatingPointError) and issubclass(
        NonFiniteLossError, ArithmeticError
    )
    assert issubclass(NonFiniteInputError, ValueError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])  # 1e300 is inf once cast to float32
def test_predict_and_evaluate_refuse_nonfinite_images(backend, bad):
    m = small_model(backend)
    x, y = data(10)
    x = x.astype(np.float64)
    x[7, 2, 3, 0] = bad
    for call in (lambda: m.predict(x), lambda: m.evaluate(x, y), lambda: m.train_on_batch(x, y)):
        with pytest.raises(NonFiniteInputError, match=r"x\[7\]") as info:
            call()
        assert info.value.argument == "x" and info.value.index == 7
        assert ("NaN" if bad != bad else "Inf") in str(info.value)
    np.testing.assert_array_equal(m.predict(x[:7]).shape, (7, 4))  # the clean samples still run


def test_fit_refuses_nonfinite_inputs_up_front(backend):
    m = small_model(backend)
    x, y = data()
    before = m.get_weights()
    x[5, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"x\[5\]"):
        m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    xv = x.copy()
    with pytest.raises(NonFiniteInputError, match=r"validation x\[5\]"):
        m.fit(data()[0], y, validation_data=(xv, y), batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


class Snapshots(callbacks.Callback):
    """The weights and optimizer state after every step."""

    def __init__(self):
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append((self.model.get_weights(), self.model.optimizer.get_state()))


@pytest.mark.parametrize("opt", ["adam", "sgd-momentum"])
def test_fit_stops_before_the_update_of_the_first_nonfinite_step(backend, opt):
    optimizer = optimizers.Adam(1e-2) if opt == "adam" else optimizers.SGD(0.05, momentum=0.9)
    m = small_model(backend, optimizer)
    x, y = data(40)
    x[27] = 3e38  # finite in float32, but the conv and batch norm overflow: NaN loss in step 4 of epoch 1
    x[27, 0, 0, 0] = -3e38
    snaps = Snapshots()
    with pytest.raises(NonFiniteLossError) as info:
        m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[snaps])
    err = info.value
    assert (err.epoch, err.step) == (0, 3) and "epoch 1, step 4" in str(err)
    assert "learning rate" in str(err) and "stop_on_nonfinite=False" in str(err)
    assert len(snaps.after) == 3
    weights, opt_state = snaps.after[-1]
    for a, b in zip(weights, m.get_weights()):  # weights AND batch-norm running statistics
        np.testing.assert_array_equal(a, b)
    assert m.optimizer.get_state()["iterations"] == opt_state["iterations"] == 3
    now = m.optimizer.get_state()["slots"]
    assert now.keys() == opt_state["slots"].keys() and now
    for key in now:
        for slot in now[key]:
            np.testing.assert_array_equal(now[key][slot], opt_state["slots"][key][slot])
    assert all(np.isfinite(w).all() for w in m.get_weights())


def test_stop_on_nonfinite_false_trains_on(backend):
    m = small_model(backend)
    x, y = data()
    x[3, 1, 1, 0] = np.inf
    h = m.fit(x, y, batch_size=8, epochs=1, verbose=0, stop_on_nonfinite=False)
    assert np.isnan(h.history["loss"][0])  # the old behaviour, now only on request


def test_train_on_batch_stops_on_a_nonfinite_loss(backend):
    m = small_model(backend, optimizers.SGD(0.1))
    x, y = data(8)
    m.train_on_batch(x, y)
    before = m.get_weights()
    with pytest.raises(NonFiniteLossError, match="train_on_batch step 2"):
        m.train_on_batch(np.where(np.random.default_rng(0).random(x.shape) < 0.5, 3e38, -3e38), y)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert m.optimizer.iterations == 1


def test_first_nonfinite_is_exact_when_the_sum_overflows():
    """The quick pass (a finite sum) cannot decide for huge finite values: the exact scan then finds no
    NaN / Inf, or the first sample holding one, without a warning."""
    from cnnkern.nonfinite import first_nonfinite

    big = np.full((3, 4), np.finfo(np.float32).max, np.float32)
    assert first_nonfinite(big) is None
    big[2, 1] = -np.inf
    big[1, 3] = np.nan
    assert first_nonfinite(big) == 1
    assert first_nonfinite(np.zeros((0, 4), np.float32)) is None
