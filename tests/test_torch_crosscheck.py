"""PyTorch as the outside witness: every op through torch.nn.functional / torch.optim in float64, forward and
backward (autograd), against the reference in float64 and against every backend in the dtypes it runs.

The reference in float64 must agree with torch to float64 rounding; a backend in float32 to the same
tolerances as in the conformance suite.
"""

from typing import Any

import numpy as np
import pytest

from cnnkern.kernels import TABLE

from .cases import CONV_CASES, LOSS_CASES, POOL_CASES, randn
from .compare import EPS32, assert_close, elementwise_tol, gemm_tol, scaled

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
F = torch.nn.functional


def _dtypes(target):
    """The reference also runs in float64 here: torch is the witness for the specification itself."""
    return ("float64",) + target.dtypes if target.name == "reference" else target.dtypes


def t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def n(tensor):
    return tensor.detach().numpy()


TORCH_CONV = [
    c
    for c in CONV_CASES
    if c.id
    in (
        "basic-3x3-pad1",
        "c17-k15-batch3",
        "stride-pair-pad-pair",
        "same-3x3",
        "same-even-4x2",
        "same-dilation2",
        "dilation-pair-nonsquare",
        "groups2",
        "depthwise-mult2-stride2",
        "no-bias",
        "stride3-leftover",
        "valid-5x5",
    )
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("case", TORCH_CONV, ids=lambda c: c.id)
def test_conv2d(plain_target, case):
    x, w = randn(case.x, 1), randn(case.w, 2)
    b = randn((case.w[0],), 3) if case.bias else None
    tx, tw, tb = t(x, True), t(w, True), None if b is None else t(b, True)
    ty = F.conv2d(
        tx, tw, tb, stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups
    )
    dy = randn(tuple(ty.shape), 4)
    ty.backward(t(dy))
    k, cg, r, s = case.w
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call("conv2d_forward", tg.put(x, dt), tg.put(w, dt), tg.put(b, dt), **case.kwargs())
        assert_close(tg.get(y), n(ty), **gemm_tol(cg * r * s, dt), what=f"{tg.id} {dt} y")
        dx, dw, db = tg.call("conv2d_backward", tg.put(dy, dt), tg.put(x, dt), tg.put(w, dt), **case.kwargs())
        assert_close(
            tg.get(dx), n(tx.grad), **gemm_tol(k // case.groups * r * s, dt), what=f"{tg.id} {dt} dx"
        )
        nred = dy.shape[0] * dy.shape[2] * dy.shape[3]
        assert_close(tg.get(dw), n(tw.grad), **gemm_tol(nred, dt), what=f"{tg.id} {dt} dw")
        if b is not None:
            assert_close(tg.get(db), n(tb.grad), **gemm_tol(nred, dt), what=f"{tg.id} {dt} db")


def _torch_pool_kwargs(case):
    return dict(
        kernel_size=case.kernel_size,
        stride=case.stride if case.stride is not None else case.kernel_size,
        padding=case.padding,
        ceil_mode=case.ceil_mode,
    )


@pytest.mark.parametrize("special", [False, True], ids=["randn", "nan-inf"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_max_pool2d(plain_target, case, special):
    x = randn(case.x, 5)
    if special:
        u = np.random.default_rng(6).random(case.x)
        x[u < 0.1], x[(u > 0.1) & (u < 0.2)], x[(u > 0.2) & (u < 0.3)] = np.nan, np.inf, -np.inf
    tx = t(x, True)
    ty, tidx = F.max_pool2d(tx, dilation=case.dilation, return_indices=True, **_torch_pool_kwargs(case))
    dy = randn(tuple(ty.shape), 7)
    ty.backward(t(dy))
    tg = plain_target
    for dt in _dtypes(tg):
        y, arg = tg.call("maxpool2d_forward", tg.put(x, dt), **case.max_kwargs())
        assert_close(tg.get(y), n(ty), atol=0, rtol=0, what=f"{tg.id} {dt} y")
        assert_close(tg.get(arg), tidx.numpy(), atol=0, rtol=0, what=f"{tg.id} {dt} indices")
        dx = tg.call("maxpool2d_backward", tg.put(dy, dt), tg.put(tidx.numpy()), case.x)
        assert_close(tg.get(dx), n(tx.grad), **gemm_tol(9, dt), what=f"{tg.id} {dt} dx")


_TORCH_ACT = {
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.1),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


@pytest.mark.parametrize("kind", list(_TORCH_ACT))
@pytest.mark.parametrize(
    "xs, ws, pool",
    [((2, 1, 28, 28), (8, 1, 3, 3), (2, 2, 0)), ((2, 3, 12, 11), (5, 3, 3, 3), (3, 2, 1))],
    ids=["c1-pool2", "c3-pool3-s2-pad1"],
)
def test_conv2d_act_maxpool(plain_target, xs, ws, pool, kind):
    """The fused conv + activation + max pool pair against autograd through conv2d, the activation and
    max_pool2d. Inputs in eighths (bias 1/64ths): the conv is exact in float32 too, so ties (relu's zeros)
    resolve alike and the indices must equal torch's."""
    rng = np.random.default_rng(30)
    x, w = rng.integers(-4, 5, size=xs) / 8, rng.integers(-4, 5, size=ws) / 8
    b = rng.integers(-4, 5, size=ws[:1]) / 64
    k, s, p = pool
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty, tidx = F.max_pool2d(_TORCH_ACT[kind](F.conv2d(tx, tw, tb)), k, s, p, return_indices=True)
    dy = randn(tuple(ty.shape), 31)
    ty.backward(t(dy))
    tg = plain_target
    taps = ws[1] * ws[2] * ws[3]
    for dt in _dtypes(tg):
        y, arg = tg.call(
            "conv2d_act_maxpool_forward", tg.put(x, dt), tg.put(w, dt), tg.put(b, dt),
            activation=kind, alpha=0.1, pool_size=k, pool_stride=s, pool_padding=p,
        )  # fmt: skip
        assert_close(tg.get(y), n(ty), **elementwise_tol(dt), what=f"{tg.id} {dt} {kind} y")
        assert_close(tg.get(arg), tidx.numpy(), atol=0, rtol=0, what=f"{tg.id} {dt} {kind} indices")
        got = tg.call(
            "conv2d_act_maxpool_backward", tg.put(dy, dt), y, arg, tg.put(x, dt), tg.put(w, dt),
            activation=kind, alpha=0.1,
        )  # fmt: skip
        k_dw = xs[0] * (xs[2] - 2) * (xs[3] - 2)
        for name, g, want, kk in zip(
            ("dx", "dw", "db"), got, (tx.grad, tw.grad, tb.grad), (taps, k_dw, k_dw)
        ):
            assert_close(tg.get(g), n(want), **gemm_tol(kk, dt, 2.0), what=f"{tg.id} {dt} {kind} {name}")


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize(
    "xs, pool", [((4, 3, 8, 8), (2, 2, 0)), ((2, 5, 9, 11), (3, 2, 1))], ids=["pool2", "pool3-s2-pad1"]
)
def test_batchnorm2d_act_maxpool(plain_target, xs, pool, kind):
    """The fused batch norm + activation + max pool pair (training) against autograd through batch_norm,
    the activation and max_pool2d: values, indices (random data: no ties after the batch norm), running
    statistics and the three gradients."""
    c = xs[1]
    x, gamma, beta = randn(xs, 50, offset=0.5), randn((c,), 51), randn((c,), 52)
    rm, rv = randn((c,), 53), 0.5 + np.abs(randn((c,), 54))
    k, s, p = pool
    tx, tgam, tbeta, trm, trv = t(x, True), t(gamma, True), t(beta, True), t(rm), t(rv)
    tz = F.batch_norm(tx, trm, trv, tgam, tbeta, training=True, momentum=0.1, eps=1e-5)
    ty, tidx = F.max_pool2d(_TORCH_ACT[kind](tz), k, s, p, return_indices=True)
    dy = randn(tuple(ty.shape), 55)
    ty.backward(t(dy))
    nv = xs[0] * xs[2] * xs[3]
    tol = 16 * EPS32 * nv**0.5 * 4
    tg = plain_target
    for dt in _dtypes(tg):
        g_rm, g_rv = tg.put(rm, dt), tg.put(rv, dt)
        y, arg, mean, invstd = tg.call(
            "batchnorm2d_act_maxpool_forward", tg.put(x, dt), tg.put(gamma, dt), tg.put(beta, dt), g_rm,
            g_rv, training=True, activation=kind, alpha=0.1, pool_size=k, pool_stride=s, pool_padding=p,
        )  # fmt: skip
        what = f"{tg.id} {dt} {kind}"
        assert_close(tg.get(y), n(ty), **scaled(dt, tol, tol), what=f"{what} y")
        assert_close(tg.get(arg), tidx.numpy(), atol=0, rtol=0, what=f"{what} indices")
        assert_close(tg.get(g_rm), n(trm), **scaled(dt, tol, tol), what=f"{what} running_mean")
        assert_close(tg.get(g_rv), n(trv), **scaled(dt, tol, tol), what=f"{what} running_var")
        got = tg.call(
            "batchnorm2d_act_maxpool_backward", tg.put(dy, dt), y, arg, tg.put(x, dt), tg.put(gamma, dt),
            mean, invstd, training=True, activation=kind, alpha=0.1,
        )  # fmt: skip
        for name, g, want in zip(("dx", "dgamma", "dbeta"), got, (tx.grad, tgam.grad, tbeta.grad)):
            assert_close(tg.get(g), n(want), **scaled(dt, 4 * tol, 4 * tol), what=f"{what} {name}")


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_avg_pool2d(plain_target, case):
    x = randn(case.x, 8)
    tx = t(x, True)
    ty = F.avg_pool2d(tx, count_include_pad=case.count_include_pad, **_torch_pool_kwargs(case))
    dy = randn(tuple(ty.shape), 9)
    ty.backward(t(dy))
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call("avgpool2d_forward", tg.put(x, dt), **case.avg_kwargs())
        assert_close(tg.get(y), n(ty), **gemm_tol(49, dt), what=f"{tg.id} {dt} y")
        dx = tg.call("avgpool2d_backward", tg.put(dy, dt), case.x, **case.avg_kwargs())
        assert_close(tg.get(dx), n(tx.grad), **gemm_tol(49, dt), what=f"{tg.id} {dt} dx")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "shape", [(2, 3, 5, 5), (3, 17, 4, 9), (2, 1, 1, 1)], ids=["2x3x5x5", "3x17x4x9", "2x1x1x1"]
)
def test_batch_norm(plain_target, shape, training):
    c = shape[1]
    x, gamma, beta = randn(shape, 10, offset=1.0), randn((c,), 11), randn((c,), 12)
    rm, rv = randn((c,), 13), 0.5 + np.abs(randn((c,), 14))
    tx, tgam, tbeta = t(x, True), t(gamma, True), t(beta, True)
    trm, trv = t(rm), t(rv)
    ty = F.batch_norm(tx, trm, trv, tgam, tbeta, training=training, momentum=0.2, eps=1e-4)
    dy = randn(shape, 15)
    ty.backward(t(dy))
    nv = shape[0] * shape[2] * shape[3]
    k = 16 * EPS32 * nv**0.5 * 2
    tg = plain_target
    for dt in _dtypes(tg):
        g_rm, g_rv = tg.put(rm, dt), tg.put(rv, dt)
        y, mean, invstd = tg.call(
            "batchnorm2d_forward",
            tg.put(x, dt),
            tg.put(gamma, dt),
            tg.put(beta, dt),
            g_rm,
            g_rv,
            training=training,
            momentum=0.2,
            eps=1e-4,
        )
        assert_close(tg.get(y), n(ty), **scaled(dt, 4 * k, 4 * k), what=f"{tg.id} {dt} y")
        assert_close(tg.get(g_rm), n(trm), **scaled(dt, k, k), what=f"{tg.id} {dt} running_mean")
        assert_close(tg.get(g_rv), n(trv), **scaled(dt, k, k), what=f"{tg.id} {dt} running_var")
        dx, dgamma, dbeta = tg.call(
            "batchnorm2d_backward",
            tg.put(dy, dt),
            tg.put(x, dt),
            tg.put(gamma, dt),
            mean,
            invstd,
            training=training,
        )
        scale = float(np.max(np.abs(gamma))) / float(np.min(np.sqrt(rv))) if not training else 4.0
        assert_close(tg.get(dx), n(tx.grad), **scaled(dt, 4 * k * scale, 4 * k), what=f"{tg.id} {dt} dx")
        assert_close(
            tg.get(dgamma), n(tgam.grad), **gemm_tol(nv, dt, magnitude=2.0), what=f"{tg.id} {dt} dgamma"
        )
        assert_close(tg.get(dbeta), n(tbeta.grad), **gemm_tol(nv, dt), what=f"{tg.id} {dt} dbeta")


@pytest.mark.parametrize("bias", [True, False])
def test_linear(plain_target, bias):
    x, w, b = randn((9, 33), 16), randn((17, 33), 17), randn((17,), 18) if bias else None
    tx, tw, tb = t(x, True), t(w, True), t(b, True) if bias else None
    ty = F.linear(tx, tw, tb)
    dy = randn((9, 17), 19)
    ty.backward(t(dy))
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call("dense_forward", tg.put(x, dt), tg.put(w, dt), tg.put(b, dt))
        assert_close(tg.get(y), n(ty), **gemm_tol(33, dt), what=f"{tg.id} {dt} y")
        dx, dw, db = tg.call("dense_backward", tg.put(dy, dt), tg.put(x, dt), tg.put(w, dt), need_db=bias)
        assert_close(tg.get(dx), n(tx.grad), **gemm_tol(17, dt), what=f"{tg.id} {dt} dx")
        assert_close(tg.get(dw), n(tw.grad), **gemm_tol(9, dt), what=f"{tg.id} {dt} dw")
        if bias:
            assert_close(tg.get(db), n(tb.grad), **gemm_tol(9, dt), what=f"{tg.id} {dt} db")


ACTIVATIONS = {
    "relu": (lambda a: F.relu(a), 0.01),
    "leaky_relu": (lambda a: F.leaky_relu(a, negative_slope=0.2), 0.2),
    "sigmoid": (torch.sigmoid, 0.01),
    "tanh": (torch.tanh, 0.01),
}


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_activation(plain_target, kind):
    fn, alpha = ACTIVATIONS[kind]
    x = randn((3, 5, 7), 20, scale=5.0).reshape(-1)
    x[:8] = [np.inf, -np.inf, 1e30, -1e30, 89.0, -89.0, 1e4, -1e4]
    x = x.reshape(3, 5, 7)
    tx = t(x, True)
    ty = fn(tx)
    dy = randn(x.shape, 21)
    ty.backward(t(dy))
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call("activation_forward", tg.put(x, dt), kind, alpha=alpha)
        assert_close(tg.get(y), n(ty), **elementwise_tol(dt), what=f"{tg.id} {dt} y")
        dx = tg.call("activation_backward", tg.put(dy, dt), y, kind, alpha=alpha)
        # from the backend's own y: at float32 rounding of y, dx of sigmoid/tanh moves by a few ulps of y
        assert_close(tg.get(dx), n(tx.grad), **scaled(dt, 32 * EPS32, 32 * EPS32), what=f"{tg.id} {dt} dx")


@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_activation_nan_propagates_like_torch(plain_target, kind):
    """A NaN input gives a NaN output, and the backward at a NaN output follows torch (relu passes dy:
    threshold_backward tests y <= 0; leaky relu scales it: y > 0 is false)."""
    fn, alpha = ACTIVATIONS[kind]
    x = np.array([np.nan, -1.0, 0.0, 2.0, np.nan, 3.0, -0.5, np.nan, 1.0])
    dy = np.array([1.5, 2.0, 3.0, 4.0, -2.0, 5.0, 6.0, 0.25, 7.0])
    tx = t(x, True)
    ty = fn(tx)
    ty.backward(t(dy))
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call("activation_forward", tg.put(x, dt), kind, alpha=alpha)
        assert_close(tg.get(y), n(ty), **elementwise_tol(dt), what=f"{tg.id} {dt} y")
        dx = tg.call("activation_backward", tg.put(dy, dt), y, kind, alpha=alpha)
        # from the backend's own y, as in test_activation
        assert_close(tg.get(dx), n(tx.grad), **scaled(dt, 32 * EPS32, 32 * EPS32), what=f"{tg.id} {dt} dx")


# the table's elementwise kernels (recipe "elementwise"): each <name>_forward's torch function of the float64
# tensors and the keyword settings; its <name>_backward, if the table has one, is checked against autograd
# (it takes dy, then the forward's arguments)
TORCH_ELEMENTWISE: dict[str, Any] = {
    "elu_forward": lambda x, alpha: F.elu(x, alpha),
}
ELEMENTWISE_FORWARD = [
    k.name for k in TABLE.values() if k.recipe == "elementwise" and k.name.endswith("_forward")
]


def test_every_elementwise_kernel_has_a_torch_witness():
    assert [name for name in ELEMENTWISE_FORWARD if name not in TORCH_ELEMENTWISE] == []


@pytest.mark.parametrize("name", ELEMENTWISE_FORWARD)
def test_elementwise(plain_target, name):
    from cnnkern import ops

    kernel = TABLE[name]
    kw = {arg.name: arg.front for arg in kernel.args if not arg.positional}
    count = sum(arg.positional for arg in kernel.args)
    xs = []
    for i in range(count):
        x = randn((3, 5, 7), 30 + i, scale=5.0).reshape(-1)
        x[:9] = [np.inf, -np.inf, 1e30, -1e30, 89.0, -89.0, 1e4, -1e4, np.nan]
        xs.append(x.reshape(3, 5, 7))
    txs = [t(x, True) for x in xs]
    ty = TORCH_ELEMENTWISE[name](*txs, **kw)
    dy = randn(ty.shape, 39)
    ty.backward(t(dy))
    backward = name[: -len("_forward")] + "_backward"
    tg = plain_target
    for dt in _dtypes(tg):
        y = tg.call(name, *[tg.put(x, dt) for x in xs], **kw)
        assert_close(tg.get(y), n(ty), **elementwise_tol(dt), what=f"{tg.id} {dt} {name}")
        if backward in TABLE:
            assert hasattr(ops, backward)
            dx = tg.call(backward, tg.put(dy, dt), *[tg.put(x, dt) for x in xs], **kw)
            assert_close(tg.get(dx), n(txs[0].grad), **elementwise_tol(dt), what=f"{tg.id} {dt} {backward}")


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.id)
def test_cross_entropy(plain_target, case):
    logits = randn((case.n, case.classes), 22, scale=case.scale)
    labels = np.random.default_rng(23).integers(0, case.classes, case.n)
    tl = t(logits, True)
    tloss = F.cross_entropy(tl, torch.tensor(labels))
    tloss.backward()
    tg = plain_target
    for dt in _dtypes(tg):
        loss, probs = tg.call("softmax_cross_entropy_forward", tg.put(logits, dt), tg.put(labels))
        tol = scaled(dt, 16 * EPS32 * case.classes**0.5, 16 * EPS32 * case.n**0.5)
        assert_close(tg.get(loss), n(tloss), **tol, what=f"{tg.id} {dt} loss")
        assert_close(
            tg.get(probs),
            n(torch.softmax(tl, 1)),
            **scaled(dt, 8 * EPS32, 8 * EPS32 * case.classes**0.5),
            what=f"{tg.id} {dt} probs",
        )
        d = tg.call("softmax_cross_entropy_backward", probs, tg.put(labels))
        assert_close(
            tg.get(d), n(tl.grad), **scaled(dt, 16 * EPS32 / case.n, 16 * EPS32), what=f"{tg.id} {dt} dlogits"
        )


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize(
    "cfg",
    [
        dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0),
        dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.05),
        dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    ],
    ids=["plain", "wd", "momentum", "nesterov-wd"],
)
def test_sgd(plain_target, cfg, steps):
    p0, grads = randn((33,), 24), [randn((33,), 25 + s) for s in range(steps)]
    tp = t(p0, True)
    opt = torch.optim.SGD([tp], **cfg)
    tg = plain_target
    for dt in _dtypes(tg):
        p = tg.put(p0, dt)
        v = tg.put(np.zeros(33), dt) if cfg["momentum"] else None
        with torch.no_grad():
            tp.copy_(t(p0))
        opt.state.clear()
        for g in grads:
            tp.grad = t(g)
            opt.step()
            tg.call("sgd_update", p, tg.put(g, dt), v, **cfg)
        assert_close(
            tg.get(p), n(tp), **scaled(dt, 16 * EPS32 * steps, 16 * EPS32 * steps), what=f"{tg.id} {dt} param"
        )
        if cfg["momentum"]:
            buf = n(opt.state[tp]["momentum_buffer"])
            assert_close(
                tg.get(v),
                buf,
                **scaled(dt, 16 * EPS32 * steps, 16 * EPS32 * steps),
                what=f"{tg.id} {dt} velocity",
            )


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize(
    "cfg",
    [
        dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    ],
    ids=["default", "wd"],
)
def test_adam(plain_target, cfg, steps):
    p0, grads = randn((17,), 26), [randn((17,), 27 + s) for s in range(steps)]
    tp = t(p0, True)
    opt = torch.optim.Adam([tp], **cfg)
    ours = dict(
        lr=cfg["lr"],
        beta1=cfg["betas"][0],
        beta2=cfg["betas"][1],
        eps=cfg["eps"],
        weight_decay=cfg["weight_decay"],
        eps_mode="torch",
    )
    tg = plain_target
    for dt in _dtypes(tg):
        p, m, v = tg.put(p0, dt), tg.put(np.zeros(17), dt), tg.put(np.zeros(17), dt)
        with torch.no_grad():
            tp.copy_(t(p0))
        opt.state.clear()
        for step, g in enumerate(grads, start=1):
            tp.grad = t(g)
            opt.step()
            tg.call("adam_update", p, tg.put(g, dt), m, v, step=step, **ours)
        tol = scaled(dt, 16 * EPS32 * steps, 16 * EPS32 * steps)
        state = opt.state[tp]
        assert_close(tg.get(p), n(tp), **tol, what=f"{tg.id} {dt} param")
        assert_close(tg.get(m), n(state["exp_avg"]), **tol, what=f"{tg.id} {dt} m")
        assert_close(tg.get(v), n(state["exp_avg_sq"]), **tol, what=f"{tg.id} {dt} v")
