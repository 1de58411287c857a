"""The reference backward kernels against central finite differences in float64, and the optimizer formulas
on hand-computed values. Once the reference is right here, every backend is compared with it.

For a forward f and a random upstream gradient dy, L = Σ f(inputs)·dy; dL/d(input) from the backward kernel
must match (L(a + h) − L(a − h)) / 2h element by element (h = 1e-6: truncation error ~h², rounding ~eps/h).
Piecewise-linear ops are probed away from their kinks: max pool on values at least 1/64 apart, ReLU on
|x| > 0.05.
"""

import math

import numpy as np
import pytest

from cnnkern import ops

from .cases import distinct, randn
from .compare import assert_close

H = 1e-6
REF = "reference"


def numeric_grad(loss, a):
    """Central differences of the scalar loss() with respect to each element of a (perturbed in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + H
        up = loss()
        a[idx] = old - H
        down = loss()
        a[idx] = old
        g[idx] = (up - down) / (2 * H)
    return g


def check(analytic, loss, a, what):
    assert_close(analytic, numeric_grad(loss, a), atol=1e-7, rtol=1e-6, what=what)


CONV = [
    dict(x=(2, 4, 6, 5), w=(3, 4, 3, 3), stride=2, padding=1),
    dict(x=(1, 2, 7, 8), w=(2, 2, 3, 2), dilation=(2, 3), padding=(1, 2)),
    dict(x=(2, 4, 5, 5), w=(6, 2, 3, 3), groups=2, padding=1),
    dict(x=(1, 3, 6, 6), w=(6, 1, 3, 3), groups=3, stride=2, padding="same"),
    dict(x=(1, 2, 7, 6), w=(3, 2, 4, 2), stride=(2, 1), padding="same"),
    dict(x=(2, 1, 5, 5), w=(2, 1, 3, 3), dilation=2, padding="same"),
]


@pytest.mark.parametrize(
    "case",
    CONV,
    ids=[
        "stride2-pad1",
        "dilation-pair",
        "groups2",
        "depthwise-same-stride2",
        "same-even-stride-pair",
        "same-dilation2",
    ],
)
def test_conv2d_backward(case):
    kw = {k: v for k, v in case.items() if k not in ("x", "w")}
    x, w, b = randn(case["x"], 1), randn(case["w"], 2), randn((case["w"][0],), 3)
    dy = randn(ops.conv2d_forward(x, w, b, backend=REF, **kw).shape, 4)

    def loss():
        return float((ops.conv2d_forward(x, w, b, backend=REF, **kw) * dy).sum())

    dx, dw, db = ops.conv2d_backward(dy, x, w, backend=REF, **kw)
    check(dx, loss, x, "dx")
    check(dw, loss, w, "dw")
    check(db, loss, b, "db")


POOL = [
    dict(x=(1, 2, 7, 7), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(x=(2, 1, 6, 7), kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    dict(x=(1, 2, 8, 8), kernel_size=3, stride=1),
]
POOL_IDS = ["3x3-s2-pad1-ceil", "nonsquare-pad", "3x3-s1-overlap"]


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("case", POOL, ids=POOL_IDS)
def test_maxpool2d_backward(case, dilation):
    kw = {k: v for k, v in case.items() if k != "x"}
    x = distinct(case["x"], 5)
    y, arg = ops.maxpool2d_forward(x, dilation=dilation, backend=REF, **kw)
    dy = randn(y.shape, 6)

    def loss():
        return float((ops.maxpool2d_forward(x, dilation=dilation, backend=REF, **kw)[0] * dy).sum())

    check(ops.maxpool2d_backward(dy, arg, x.shape, backend=REF), loss, x, "dx")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL, ids=POOL_IDS)
def test_avgpool2d_backward(case, count_include_pad):
    kw = {k: v for k, v in case.items() if k != "x"}
    x = randn(case["x"], 7)
    dy = randn(ops.avgpool2d_forward(x, count_include_pad=count_include_pad, backend=REF, **kw).shape, 8)

    def loss():
        return float(
            (ops.avgpool2d_forward(x, count_include_pad=count_include_pad, backend=REF, **kw) * dy).sum()
        )

    dx = ops.avgpool2d_backward(dy, x.shape, count_include_pad=count_include_pad, backend=REF, **kw)
    check(dx, loss, x, "dx")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "shape", [(2, 3, 3, 4), (3, 2, 1, 1), (1, 4, 2, 3)], ids=["2x3x3x4", "n3-1x1", "n1-2x3"]
)
def test_batchnorm2d_backward(shape, training):
    """Training differentiates through the batch statistics; eval treats the running statistics as
    constants."""
    c = shape[1]
    x, gamma, beta = randn(shape, 9, offset=0.5), randn((c,), 10), randn((c,), 11)
    rm, rv = randn((c,), 12), 0.5 + np.abs(randn((c,), 13))
    dy = randn(shape, 14)

    def forward():
        return ops.batchnorm2d_forward(
            x, gamma, beta, rm.copy(), rv.copy(), training=training, eps=1e-3, backend=REF
        )

    def loss():
        return float((forward()[0] * dy).sum())

    _, mean, invstd = forward()
    dx, dgamma, dbeta = ops.batchnorm2d_backward(dy, x, gamma, mean, invstd, training=training, backend=REF)
    check(dx, loss, x, "dx")
    check(dgamma, loss, gamma, "dgamma")
    check(dbeta, loss, beta, "dbeta")


def test_dense_backward():
    x, w, b = randn((3, 5), 15), randn((4, 5), 16), randn((4,), 17)
    dy = randn((3, 4), 18)

    def loss():
        return float((ops.dense_forward(x, w, b, backend=REF) * dy).sum())

    dx, dw, db = ops.dense_backward(dy, x, w, backend=REF)
    check(dx, loss, x, "dx")
    check(dw, loss, w, "dw")
    check(db, loss, b, "db")


@pytest.mark.parametrize(
    "kind,alpha",
    [("relu", 0.01), ("leaky_relu", 0.01), ("leaky_relu", 0.3), ("sigmoid", 0.0), ("tanh", 0.0)],
    ids=["relu", "leaky_relu", "leaky_relu-0.3", "sigmoid", "tanh"],
)
def test_activation_backward(kind, alpha):
    x = randn((4, 9), 19, scale=2.0)
    x = np.where(np.abs(x) < 0.05, 0.5, x)  # keep away from the kink at 0
    dy = randn(x.shape, 20)

    def loss():
        return float((ops.activation_forward(x, kind, alpha=alpha, backend=REF) * dy).sum())

    y = ops.activation_forward(x, kind, alpha=alpha, backend=REF)
    check(ops.activation_backward(dy, y, kind, alpha=alpha, backend=REF), loss, x, "dx")


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_cross_entropy_backward(scale):
    logits = randn((5, 7), 21, scale=scale)
    labels = np.array([0, 6, 3, 6, 0])

    def loss():
        return float(ops.softmax_cross_entropy_forward(logits, labels, backend=REF)[0])

    _, probs = ops.softmax_cross_entropy_forward(logits, labels, backend=REF)
    check(ops.softmax_cross_entropy_backward(probs, labels, backend=REF), loss, logits, "dlogits")


def test_softmax_cross_entropy_forward_by_hand():
    """Two classes with logits (0, log 3): probs (1/4, 3/4); loss of label 0 is log 4, of label 1 log(4/3)."""
    logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    loss, probs = ops.softmax_cross_entropy_forward(logits, np.array([0, 1]), backend=REF)
    assert_close(probs, [[0.25, 0.75], [0.25, 0.75]], atol=1e-15, rtol=1e-15, what="probs")
    assert_close(loss, (math.log(4.0) + math.log(4.0 / 3.0)) / 2, atol=0, rtol=1e-15, what="loss")


# Optimizers on two parameters by hand: param (1, -2), grad (0.5, -0.25), previous velocity (0.2, 0), lr 0.1.


def _sgd(**kw):
    p, v = np.array([1.0, -2.0]), np.array([0.2, 0.0])
    ops.sgd_update(p, np.array([0.5, -0.25]), v if kw.get("momentum") else None, lr=0.1, backend=REF, **kw)
    return p, v


def test_sgd_by_hand():
    # plain: p - lr·g = (1 - 0.05, -2 + 0.025)
    p, _ = _sgd()
    assert_close(p, [0.95, -1.975], atol=0, rtol=1e-15, what="plain")
    # momentum 0.9, weight decay 0.01: g = (0.5 + 0.01, -0.25 - 0.02) = (0.51, -0.27);
    # v = 0.9·(0.2, 0) + g = (0.69, -0.27); p - 0.1·v = (0.931, -1.973)
    p, v = _sgd(momentum=0.9, weight_decay=0.01)
    assert_close(v, [0.69, -0.27], atol=0, rtol=1e-15, what="velocity")
    assert_close(p, [0.931, -1.973], atol=0, rtol=1e-15, what="momentum")
    # nesterov: the step is g + 0.9·v = (0.51 + 0.621, -0.27 - 0.243) = (1.131, -0.513); p = (0.8869, -1.9487)
    p, v = _sgd(momentum=0.9, nesterov=True, weight_decay=0.01)
    assert_close(v, [0.69, -0.27], atol=0, rtol=1e-15, what="nesterov velocity")
    assert_close(p, [0.8869, -1.9487], atol=0, rtol=1e-15, what="nesterov")


def test_adam_first_step_by_hand():
    """Step 1 from m = v = 0: m = (1-β1)g, v = (1-β2)g², so after bias correction m̂ = g and sqrt(v̂) = |g|.
    torch form: update = lr·g/(|g| + eps). keras form: update = lr·sqrt(1-β2)/(1-β1)·m/(sqrt(v) + eps)
    = lr·g·s/(|g|·s + eps) with s = sqrt(1-β2)."""
    g = np.array([0.5, -0.25])
    for eps_mode, eps in (("torch", 1e-8), ("keras", 1e-7)):
        p, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
        ops.adam_update(p, g, m, v, step=1, lr=0.1, eps=eps, eps_mode=eps_mode, backend=REF)
        assert_close(m, [0.05, -0.025], atol=0, rtol=1e-15, what=f"{eps_mode} m")
        assert_close(v, [0.00025, 0.0000625], atol=0, rtol=1e-12, what=f"{eps_mode} v")
        s = 1.0 if eps_mode == "torch" else math.sqrt(0.001)
        want = [1.0 - 0.1 * 0.5 * s / (0.5 * s + eps), -2.0 + 0.1 * 0.25 * s / (0.25 * s + eps)]
        # the forms differ in the 7th digit (updates of 0.99999998·lr and 0.99999368·lr): far above rtol
        assert_close(p, want, atol=0, rtol=1e-14, what=f"{eps_mode} param")


def _adam_scalar(p, g_seq, lr, b1, b2, eps, wd, eps_mode):
    """Adam on one scalar, from docs/design.md §3 in plain floats (weight decay as L2: g += wd·p)."""
    m = v = 0.0
    for t, g in enumerate(g_seq, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if eps_mode == "torch":
            p -= (lr / (1 - b1**t)) * m / (math.sqrt(v) / math.sqrt(1 - b2**t) + eps)
        else:
            p -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("eps_mode", ["torch", "keras"])
def test_adam_multistep_against_scalar_formula(eps_mode):
    gs = randn((6, 3), 22)
    p0 = randn((3,), 23)
    p, m, v = p0.copy(), np.zeros(3), np.zeros(3)
    for t in range(6):
        ops.adam_update(
            p,
            gs[t],
            m,
            v,
            step=t + 1,
            lr=0.05,
            beta1=0.8,
            beta2=0.95,
            eps=1e-3,
            weight_decay=0.1,
            eps_mode=eps_mode,
            backend=REF,
        )
    want = [_adam_scalar(p0[i], gs[:, i], 0.05, 0.8, 0.95, 1e-3, 0.1, eps_mode) for i in range(3)]
    assert_close(p, want, atol=1e-15, rtol=1e-13, what=f"{eps_mode} param after 6 steps")
