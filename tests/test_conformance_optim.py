"""sgd_update / adam_update (AdamW too) / rmsprop_update (in place) on every backend against the float64
reference, over several steps.

Each step draws a new gradient; param and the optimizer state are compared after step 1 and after the last
step. The error budget grows with the step count (each step rounds param and state once more).
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import randn
from .compare import EPS32, assert_close, scaled

SHAPES = [(1,), (7,), (16,), (33,), (2, 3, 5, 7)]
SHAPE_IDS = ["len1", "len7", "len16", "len33", "4d"]

SGD_CONFIGS = [
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(lr=0.01, momentum=0.5, nesterov=True, weight_decay=5e-4),
    dict(lr=0.2, momentum=0.99, nesterov=False, weight_decay=0.1),
]
SGD_IDS = ["plain", "wd", "momentum", "nesterov", "nesterov-wd", "momentum0.99-wd"]

ADAM_CONFIGS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, eps_mode="torch"),
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01, eps_mode="torch"),
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0, eps_mode="keras"),
    dict(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.1, eps_mode="keras"),
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05, decoupled_weight_decay=True),
    dict(
        lr=0.1,
        beta1=0.5,
        beta2=0.9,
        eps=1e-3,
        weight_decay=0.3,
        eps_mode="keras",
        decoupled_weight_decay=True,
    ),
]
ADAM_IDS = ["torch", "torch-wd", "keras", "keras-wd-big-eps", "adamw", "adamw-keras"]

RMSPROP_CONFIGS = [
    dict(lr=1e-2, rho=0.9, eps=1e-7, weight_decay=0.0, momentum=0.0, centered=False),
    dict(lr=1e-2, rho=0.99, eps=1e-8, weight_decay=0.01, momentum=0.0, centered=False),
    dict(lr=1e-3, rho=0.9, eps=1e-6, weight_decay=0.0, momentum=0.9, centered=False),
    dict(lr=1e-3, rho=0.9, eps=1e-6, weight_decay=0.0, momentum=0.0, centered=True),
    dict(lr=5e-3, rho=0.8, eps=1e-3, weight_decay=0.1, momentum=0.5, centered=True),
]
RMSPROP_IDS = ["plain", "wd", "momentum", "centered", "centered-momentum-wd"]


def _tol(dt, step):
    return scaled(dt, 16 * EPS32 * step, 16 * EPS32 * step)


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=SGD_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_sgd_update(target, shape, config, steps):
    param = randn(shape, 1)
    momentum = config["momentum"] > 0
    velocity = np.zeros(shape) if momentum else None
    grads = [randn(shape, 10 + t) for t in range(steps)]
    for dt in target.dtypes:
        p_ref, v_ref = param.copy(), None if velocity is None else velocity.copy()
        p, v = target.put(param, dt), target.put(velocity, dt)
        for t, g in enumerate(grads, start=1):
            ops.sgd_update(p_ref, g, v_ref, backend="reference", **config)
            target.call("sgd_update", p, target.put(g, dt), v, **config)
            assert_close(
                target.get(p), p_ref, **_tol(dt, t), what=f"{target.id} {dt} param after step {t}", dtype=dt
            )
            if momentum:
                assert_close(
                    target.get(v),
                    v_ref,
                    **_tol(dt, t),
                    what=f"{target.id} {dt} velocity after step {t}",
                    dtype=dt,
                )


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=ADAM_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_adam_update(target, shape, config, steps):
    param = randn(shape, 2)
    grads = [randn(shape, 20 + t) for t in range(steps)]
    for dt in target.dtypes:
        p_ref, m_ref, v_ref = param.copy(), np.zeros(shape), np.zeros(shape)
        p, m, v = target.put(param, dt), target.put(np.zeros(shape), dt), target.put(np.zeros(shape), dt)
        for t, g in enumerate(grads, start=1):
            ops.adam_update(p_ref, g, m_ref, v_ref, step=t, backend="reference", **config)
            target.call("adam_update", p, target.put(g, dt), m, v, step=t, **config)
            for name, got, want in (("param", p, p_ref), ("m", m, m_ref), ("v", v, v_ref)):
                assert_close(
                    target.get(got),
                    want,
                    **_tol(dt, t),
                    what=f"{target.id} {dt} {name} after step {t}",
                    dtype=dt,
                )


def test_adam_resumes_at_a_later_step(target):
    """State carried in from elsewhere, first call at step 7: the bias corrections use the step given."""
    shape = (17,)
    param, g = randn(shape, 3), randn(shape, 4)
    m0, v0 = randn(shape, 5, scale=0.1), np.abs(randn(shape, 6, scale=0.1))
    p_ref, m_ref, v_ref = param.copy(), m0.copy(), v0.copy()
    ops.adam_update(p_ref, g, m_ref, v_ref, step=7, lr=1e-2, backend="reference")
    p, m, v = target.put(param, "float32"), target.put(m0, "float32"), target.put(v0, "float32")
    target.call("adam_update", p, target.put(g, "float32"), m, v, step=7, lr=1e-2)
    for name, got, want in (("param", p, p_ref), ("m", m, m_ref), ("v", v, v_ref)):
        assert_close(target.get(got), want, **_tol("float32", 1), what=f"{target.id} {name}", dtype="float32")


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("config", RMSPROP_CONFIGS, ids=RMSPROP_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_rmsprop_update(target, shape, config, steps):
    param = randn(shape, 7)
    grads = [randn(shape, 30 + t) for t in range(steps)]
    buf0 = np.zeros(shape) if config["momentum"] > 0 else None
    avg0 = np.zeros(shape) if config["centered"] else None
    for dt in target.dtypes:
        ref = [
            param.copy(),
            np.zeros(shape),
            None if buf0 is None else buf0.copy(),
            None if avg0 is None else avg0.copy(),
        ]
        got = [
            target.put(param, dt),
            target.put(np.zeros(shape), dt),
            target.put(buf0, dt),
            target.put(avg0, dt),
        ]
        for t, g in enumerate(grads, start=1):
            ops.rmsprop_update(ref[0], g, *ref[1:], backend="reference", **config)
            target.call("rmsprop_update", got[0], target.put(g, dt), *got[1:], **config)
            for name, a, want in zip(("param", "square_avg", "momentum_buffer", "grad_avg"), got, ref):
                if want is not None:
                    assert_close(
                        target.get(a),
                        want,
                        **_tol(dt, t),
                        what=f"{target.id} {dt} {name} after step {t}",
                        dtype=dt,
                    )
