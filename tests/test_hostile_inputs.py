"""Hostile inputs at the front door (issue 12, items 3-7 and 16), on every backend: each case either gives the
right answer or a clear error naming the argument, never undefined behaviour in a kernel. Item 8 (an empty
batch) is in test_hostile_inputs_empty.py; the two run as one group under the ASan + UBSan build of the
extension: ``pytest tests/test_hostile_inputs.py tests/test_hostile_inputs_empty.py``.
"""

import math
import os
import re

import numpy as np
import pytest

from cnnkern import ops, shapes
from cnnkern.backends.base import FUSED_KERNELS, KERNELS
from cnnkern.ops import check
from cnnkern.ops import pool as pool_ops

from .compare import assert_equal
from .test_frontdoor import CALLS, _numpy_inputs

F32 = np.float32


# --- item 3: softmax cross-entropy at a large offset ----------------------------------------------------


@pytest.mark.parametrize("offset", [1e16, -1e16, 3e38, -3e38, 2.0**60])
def test_loss_at_a_large_offset_is_log_c(target, offset):
    """Equal logits of any magnitude give the loss log C (here log 2, log 3): the loss comes from the shifted
    logit, never from m + log s - x[label], which rounds to 0 when |m| dwarfs log s."""
    for dt in target.dtypes:
        logits = np.array([[offset, offset], [offset, offset]], dt)
        logits3 = np.full((1, 3), offset, dt)
        loss, probs = target.call(
            "softmax_cross_entropy_forward", target.put(logits), target.put(np.array([0, 1]))
        )
        loss3, _ = target.call(
            "softmax_cross_entropy_forward", target.put(logits3), target.put(np.array([2]))
        )
        tol = 1e-6 if dt == "float32" else 1e-12
        got, got3 = float(target.get(loss)), float(target.get(loss3))
        assert abs(got - math.log(2)) <= tol, f"{target.id} {dt}: loss {got}, want log 2"
        assert abs(got3 - math.log(3)) <= tol, f"{target.id} {dt}: loss {got3}, want log 3"
        np.testing.assert_allclose(target.get(probs), 0.5, rtol=0, atol=tol)
        d = target.call("softmax_cross_entropy_backward", probs, target.put(np.array([0, 1])))
        np.testing.assert_allclose(target.get(d), [[-0.25, 0.25], [0.25, -0.25]], rtol=0, atol=tol)


def test_loss_at_a_large_offset_matches_the_shifted_reference(target):
    """Distinct logits on a large offset (each row its own): the mean loss equals the float64 reference."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 5))
    offsets = np.array([0.0, 1e16, -1e16, 2.0**55, 1e20, -1e30])[:, None]
    labels = np.array([0, 1, 2, 3, 4, 0])
    for dt in target.dtypes:
        # rows with a huge offset are equal after rounding to dt: the loss is then log 5
        logits = (base * (np.abs(offsets) < 1) + offsets).astype(dt)
        shifted = logits.astype(np.float64) - logits.astype(np.float64).max(axis=1, keepdims=True)
        want = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(6), labels])
        loss, _ = target.call("softmax_cross_entropy_forward", target.put(logits), target.put(labels))
        got = float(target.get(loss))
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"{target.id} {dt}: {got} != {want}"


# --- the arrays that reach a kernel (items 5, 7) -------------------------------------------------------

# The fused kernels, in the format of test_frontdoor.CALLS: "kernel[-variant]" -> (build(v), in-place names)
FUSED_CALLS = {
    "conv2d_bias_act_forward": (lambda v: dict(x=v.x, w=v.w, b=v.b, padding=1, activation="relu"), ()),
    "dense_bias_act_forward": (lambda v: dict(x=v.xd, w=v.wd, b=v.bd, activation="tanh"), ()),
    "maxpool2d_act_backward": (
        lambda v: dict(dy=v.pdy, argmax=v.arg, a=np.abs(v.x), activation="relu"),
        (),
    ),
    "conv2d_act_maxpool_forward": (
        lambda v: dict(x=v.x, w=v.w, b=v.b, padding=1, activation="relu", pool_size=2),
        (),
    ),
    "conv2d_act_maxpool_backward": (
        lambda v: dict(
            dy=v.dy[:, :, ::2, ::2].copy(), y=np.abs(v.dy[:, :, ::2, ::2]), argmax=_pool_argmax(v.dy),
            x=v.x, w=v.w, padding=1, activation="relu",
        ),
        (),
    ),
    "adam_update_multi": (
        lambda v: dict(params=[v.param], grads=[v.grad], ms=[v.m], vs=[v.v], step=2), ("params", "ms", "vs")
    ),
}  # fmt: skip
ALL_CALLS = {**CALLS, **FUSED_CALLS}


def _pool_argmax(z):
    return ops.maxpool2d_forward(z, kernel_size=2, backend="reference")[1]


def _misaligned(a):
    """A C-contiguous copy of a whose address is 1 byte past an aligned one (not aligned to its itemsize)."""
    buf = np.empty(a.nbytes + a.itemsize, np.uint8)
    v = buf[1 : 1 + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    assert v.flags.c_contiguous and not v.flags.aligned
    return v


class _Sub(np.ndarray):
    """A plain ndarray subclass (like np.memmap or a library's tagged array): no meaning the kernels miss."""


def _spy_kernels(monkeypatch, be):
    """Record every array argument of every kernel method of be (lists of arrays flattened)."""
    seen = []
    for name in KERNELS + FUSED_KERNELS:
        original = getattr(be, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            for v in list(args) + list(kwargs.values()):
                for a in v if isinstance(v, (list, tuple)) else [v]:
                    if isinstance(a, np.ndarray):
                        seen.append((_name, a))
            return _original(*args, **kwargs)

        monkeypatch.setattr(be, name, spy)
    return seen


def _numpy_only(tg):
    if tg.backend.array_module != "numpy":
        pytest.skip(f"{tg.name} arrays are CuPy's: no misaligned views or NumPy subclasses")


def _layout(a, kind):
    """a in the given hostile layout (lists element-wise): 'misaligned' or 'subclass'."""
    if isinstance(a, list):
        return [_layout(e, kind) for e in a]
    if not isinstance(a, np.ndarray):
        return a
    return _misaligned(a) if kind == "misaligned" else a.copy().view(_Sub)


def _call_with(tg, kernel, kwargs, inplace, kind):
    args = {k: (_layout(a, kind) if k not in inplace or kind == "subclass" else _copy(a)) for k, a in
            kwargs.items()}  # fmt: skip
    out = tg.call(kernel, **args)
    outs = list(out) if isinstance(out, tuple) else [out]
    return outs + [args[k] for k in inplace]


def _copy(a):
    if isinstance(a, list):
        return [e.copy() for e in a]
    return a.copy() if isinstance(a, np.ndarray) else a


def _flat(values):
    out = []
    for v in values:
        out += v if isinstance(v, list) else [v]
    return out


@pytest.mark.parametrize("kind", ["misaligned", "subclass"])
@pytest.mark.parametrize("call", list(ALL_CALLS))
def test_kernels_see_aligned_base_arrays(plain_target, monkeypatch, call, kind):
    """Misaligned C-contiguous views (item 5) and ndarray subclasses (item 7), as every argument but the
    in-place targets: the kernels receive aligned, C-contiguous base ndarrays only, and the result is that of
    plain arrays (a subclassed in-place target is updated through its base-class view)."""
    _numpy_only(plain_target)
    kernel, (build, inplace) = call.split("-")[0], ALL_CALLS[call]
    kwargs = build(_numpy_inputs())
    want = _call_with(plain_target, kernel, kwargs, inplace, "plain")
    seen = _spy_kernels(monkeypatch, plain_target.backend)
    got = _call_with(plain_target, kernel, kwargs, inplace, kind)
    assert seen, f"{kernel}: no kernel was called"
    for name, a in seen:
        assert type(a) is np.ndarray, f"{plain_target.id} {kernel}: {name} received a {type(a).__name__}"
        assert a.flags.aligned and a.flags.c_contiguous, f"{plain_target.id} {kernel}: {name} got {a.flags}"
    for i, (g, w) in enumerate(zip(_flat(got), _flat(want))):
        if w is None:
            assert g is None
        else:
            assert_equal(np.asarray(g), np.asarray(w), what=f"{plain_target.id} {kernel} output {i} ({kind})")


_INPLACE_CALLS = [c for c in ALL_CALLS if ALL_CALLS[c][1]]


@pytest.mark.parametrize("call", _INPLACE_CALLS)
def test_misaligned_inplace_target_is_refused(plain_target, call):
    """An in-place target cannot be copied (the copy would lose the update): a misaligned one is refused,
    naming it, and left unchanged."""
    _numpy_only(plain_target)
    kernel, (build, inplace) = call.split("-")[0], ALL_CALLS[call]
    for target_name in inplace:
        kwargs = {k: _copy(a) for k, a in build(_numpy_inputs()).items()}
        kwargs[target_name] = _layout(kwargs[target_name], "misaligned")
        before = _copy(kwargs[target_name])
        with pytest.raises(ValueError, match=r"aligned") as info:
            plain_target.call(kernel, **kwargs)
        assert re.search(rf"\b{re.escape(target_name)}", str(info.value)), str(info.value)
        for a, b in zip(_flat([kwargs[target_name]]), _flat([before])):
            assert_equal(a, b, what=f"{kernel}: refused {target_name} left unchanged")


@pytest.mark.parametrize(
    "kernel, build, name",
    [
        ("activation_forward", lambda x: dict(x=x, kind="relu"), "x"),
        ("conv2d_forward", lambda x: dict(x=x, w=np.ones((1, 3, 1, 1), F32)), "x"),
        ("softmax_cross_entropy_forward", lambda x: dict(logits=x[0, 0], labels=np.zeros(6, int)), "logits"),
        ("sgd_update", lambda x: dict(param=x.ravel(), grad=x.data.ravel(), velocity=None, lr=0.1), "param"),
    ],
)
def test_masked_arrays_are_refused(plain_target, kernel, build, name):
    """A masked array's mask would be silently ignored by every kernel: refused with a TypeError naming the
    argument (item 7), on every backend alike."""
    _numpy_only(plain_target)
    x = np.ma.masked_array(np.ones((2, 3, 6, 6), F32), mask=False)
    x.mask[0, 0, 0, 0] = True
    kwargs = build(x)
    with pytest.raises(TypeError, match=rf"{name} is a masked array"):
        plain_target.call(kernel, **kwargs)
    with pytest.raises(TypeError, match=r"labels is a masked array"):
        plain_target.call("softmax_cross_entropy_forward", np.ones((2, 3), F32), np.ma.masked_array([0, 1]))
    with pytest.raises(TypeError, match=r"argmax is a masked array"):
        arg = np.ma.masked_array(np.zeros((1, 1, 1, 1), np.int64))
        plain_target.call("maxpool2d_backward", np.ones((1, 1, 1, 1), F32), arg, (1, 1, 2, 2))


# --- item 4: non-finite hyperparameters ------------------------------------------------------------------

_OPTIM_HYPER = {
    "sgd_update": ("lr", "momentum", "weight_decay"),
    "adam_update": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adam_update_multi": ("lr", "beta1", "beta2", "eps", "weight_decay"),
}


def _optim_args(tg, kernel):
    p, g = tg.put(np.linspace(-1, 1, 6), F32), tg.put(np.linspace(1, -1, 6), F32)
    if kernel == "sgd_update":
        return dict(param=p, grad=g, velocity=tg.put(np.zeros(6), F32), lr=0.1, momentum=0.9)
    m, v = tg.put(np.zeros(6), F32), tg.put(np.zeros(6), F32)
    if kernel == "adam_update":
        return dict(param=p, grad=g, m=m, v=v, step=1)
    return dict(params=[p], grads=[g], ms=[m], vs=[v], step=1)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("kernel, name", [(k, n) for k, names in _OPTIM_HYPER.items() for n in names])
def test_nonfinite_hyperparameters_are_refused(plain_target, kernel, name, value):
    """One rule for every optimizer kernel and hyperparameter: a non-finite value is a ValueError naming it,
    and nothing is written (sgd_update with lr=inf left NaN on numba and -inf elsewhere)."""
    kwargs = _optim_args(plain_target, kernel)
    before = {k: plain_target.get(_flat([a])[0]).copy() for k, a in kwargs.items() if not np.isscalar(a)}
    kwargs[name] = value
    with pytest.raises(ValueError, match=rf"^{name} must"):
        plain_target.call(kernel, **kwargs)
    for k, a in before.items():
        assert_equal(plain_target.get(_flat([kwargs[k]])[0]), a, what=f"{kernel}: {k} after a refused call")


@pytest.mark.parametrize(
    "cls, name, value",
    [
        ("SGD", "learning_rate", math.inf),
        ("SGD", "momentum", math.inf),
        ("SGD", "weight_decay", math.inf),
        ("Adam", "learning_rate", math.inf),
        ("Adam", "beta_1", -math.inf),
        ("Adam", "beta_2", math.nan),
        ("Adam", "epsilon", math.inf),
        ("Adam", "weight_decay", math.inf),
    ],
)
def test_optimizer_objects_refuse_nonfinite_hyperparameters(cls, name, value):
    """The Keras-style optimizers apply the front door's rule when built, naming the argument."""
    from cnnkern import optimizers

    with pytest.raises(ValueError, match=rf"^{name} must"):
        getattr(optimizers, cls)(**{name: value})


def test_batchnorm_eps_must_be_finite(plain_target):
    x = plain_target.put(np.random.default_rng(0).standard_normal((2, 3, 2, 2)), F32)
    rm, rv = plain_target.put(np.zeros(3), F32), plain_target.put(np.ones(3), F32)
    with pytest.raises(ValueError, match=r"^eps must be finite"):
        plain_target.call("batchnorm2d_forward", x, None, None, rm, rv, training=True, eps=math.inf)


# --- item 16: leaky_relu's slope and the backward from the output ------------------------------------------

_ALPHA_CALLS = {
    "activation_forward": lambda v: dict(x=v.x, kind="leaky_relu"),
    "activation_backward": lambda v: dict(dy=v.dy, y=v.dy, kind="leaky_relu"),
    "conv2d_bias_act_forward": lambda v: dict(x=v.x, w=v.w, activation="leaky_relu"),
    "dense_bias_act_forward": lambda v: dict(x=v.xd, w=v.wd, activation="leaky_relu"),
    "maxpool2d_act_backward": lambda v: dict(dy=v.pdy, argmax=v.arg, a=v.x, activation="leaky_relu"),
    "conv2d_act_maxpool_forward": lambda v: dict(x=v.x, w=v.w, padding=1, activation="leaky_relu",
                                                 pool_size=2),
    "conv2d_act_maxpool_backward": lambda v: dict(
        dy=v.pdy[:, :1].repeat(4, 1), y=v.pdy[:, :1].repeat(4, 1), argmax=v.arg[:, :1].repeat(4, 1), x=v.x,
        w=v.w, padding=1, activation="leaky_relu",
    ),
}  # fmt: skip


@pytest.mark.parametrize("alpha", [-0.5, -1e-30, math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("kernel", list(_ALPHA_CALLS))
def test_leaky_relu_slope_must_be_finite_and_not_negative(plain_target, kernel, alpha):
    """Every backward reads the forward output y; a negative slope makes y > 0 for x < 0, so its gradient
    could not be told from y (max error 2.9 before): every kernel that takes leaky_relu refuses it, naming
    alpha, and an infinite slope too."""
    v = _numpy_inputs()
    kwargs = _ALPHA_CALLS[kernel](v)
    kwargs = {k: (plain_target.put(a) if isinstance(a, np.ndarray) else a) for k, a in kwargs.items()}
    with pytest.raises(ValueError, match=r"^alpha must"):
        plain_target.call(kernel, **kwargs, alpha=alpha)


@pytest.mark.parametrize("kind, alpha", [("leaky_relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", 3.0),
                                         ("relu", 0.01), ("sigmoid", 0.01), ("tanh", 0.01)])  # fmt: skip
def test_activation_backward_from_the_output_matches_torch(target, kind, alpha):
    """The backward from y equals PyTorch's gradient from x for every slope the front door accepts (and for
    the other activations, whose derivative is a function of y)."""
    torch = pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")
    x = np.concatenate([np.linspace(-4, 4, 33), [0.0, -0.0, 1e-30, -1e-30]]).astype(F32)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(F32)
    tx = torch.tensor(x, requires_grad=True)
    ty = {"leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, alpha), "relu": torch.relu,
          "sigmoid": torch.sigmoid, "tanh": torch.tanh}[kind](tx)  # fmt: skip
    ty.backward(torch.tensor(dy))
    y = target.call("activation_forward", target.put(x), kind, alpha=alpha)
    dx = target.call("activation_backward", target.put(dy), y, kind, alpha=alpha)
    np.testing.assert_allclose(target.get(y), ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(target.get(dx), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


# --- item 6: integers beyond any size, and allocations beyond memory ----------------------------------------

_X = np.ones((1, 1, 4, 4), F32)
_W = np.ones((1, 1, 1, 1), F32)
_HUGE = {
    "stride": ("conv2d_forward", dict(x=_X, w=_W, stride=2**70)),
    "padding": ("conv2d_forward", dict(x=_X, w=_W, padding=2**31)),
    "dilation[1]": ("conv2d_forward", dict(x=_X, w=_W, dilation=(1, 2**64))),
    "groups": ("conv2d_forward", dict(x=_X, w=_W, groups=2**70)),
    "kernel_size": ("maxpool2d_forward", dict(x=_X, kernel_size=2**70)),
    "stride[0]": ("avgpool2d_forward", dict(x=_X, kernel_size=2, stride=(2**63, 1))),
    "x_shape[2]": ("maxpool2d_backward", dict(dy=_X, argmax=np.zeros((1, 1, 4, 4), np.int64),
                                              x_shape=(1, 1, 2**70, 4))),
    "step": ("adam_update", dict(param=np.ones(3, F32), grad=np.ones(3, F32), m=np.zeros(3, F32),
                                 v=np.zeros(3, F32), step=2**70)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(_HUGE))
def test_integers_beyond_their_bound_are_refused(plain_target, name):
    """A size-like integer beyond 2**31 - 1 (step: 2**62) is a ValueError naming it on every backend, before
    pybind11 ("incompatible function arguments"), Numba (TypingError) or numpy's allocator sees it."""
    kernel, kwargs = _HUGE[name]
    kwargs = {k: (plain_target.put(a) if isinstance(a, np.ndarray) else a) for k, a in kwargs.items()}
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} must be <= "):
        plain_target.call(kernel, **kwargs)


_BIG = {
    "conv2d_forward-padding": (dict(x=_X, w=_W, padding=2**11), "padding"),
    "conv2d_backward-padding": (dict(x=_X, w=_W, padding=548), "padding"),
    "maxpool2d_forward-kernel_size": (dict(x=_X[:, :, :1, :1], kernel_size=2**20 + 1, padding=2**19),
                                      "padding"),
    "avgpool2d_backward-x_shape": (dict(dy=_X[:, :, :1, :1], x_shape=(1, 1, 2**12, 2**12), kernel_size=2**12),
                                   "x_shape"),
    "maxpool2d_backward-x_shape": (dict(dy=_X[:, :, :1, :1], argmax=np.zeros((1, 1, 1, 1), int),
                                        x_shape=(1, 1, 2**12, 2**12)), "x_shape"),
    "activation_forward-broadcast": (dict(x=np.broadcast_to(F32(1), (2**12, 2**12)), kind="relu"),
                                     "copy of x"),
    "sgd_update-broadcast": (dict(param=np.ones(2**23, F32), grad=np.broadcast_to(F32(1), (2**23,)),
                                  velocity=None, lr=0.1), "copy of grad"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_BIG))
def test_allocations_beyond_the_limit_are_refused_before_allocating(plain_target, monkeypatch, case):
    """With CNNKERN_MAX_ALLOC_BYTES at 16 MiB (its floor), a call whose outputs, padded input or contiguous
    copies would take more is refused with AllocationTooLargeError (a MemoryError and a ValueError) that names
    the argument and the limit, before anything is allocated (the same rule at 8 GiB for a broadcast view and
    the machine's memory by default)."""
    _numpy_only(plain_target)
    monkeypatch.setenv("CNNKERN_MAX_ALLOC_BYTES", str(2**24))
    kwargs, name = _BIG[case]
    kernel = case.split("-")[0]
    if kernel == "conv2d_backward":
        kwargs = dict(kwargs, dy=np.ones((1, 1, 1100, 1100), F32))  # 5 MB: dy exists, the padded x not yet
    with pytest.raises(check.AllocationTooLargeError) as info:
        plain_target.call(kernel, **kwargs)
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "CNNKERN_MAX_ALLOC_BYTES" in msg and "16777216" in msg, msg
    if name is not None:
        assert name in msg, msg


def test_memory_limit_comes_from_the_environment_or_the_machine(monkeypatch):
    """Unset: a quarter of the memory available now (which moves a little between two reads)."""
    monkeypatch.delenv("CNNKERN_MAX_ALLOC_BYTES", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit, available = check.memory_limit(), check.available_memory()
    assert 0 < limit <= physical // 4
    assert abs(limit - available // 4) <= 0.1 * available, (limit, available)
    monkeypatch.setenv("CNNKERN_MAX_ALLOC_BYTES", "12345")
    assert check.memory_limit() == 12345
    for bad in ("lots", "0", "-1"):
        monkeypatch.setenv("CNNKERN_MAX_ALLOC_BYTES", bad)
        with pytest.raises(ValueError, match="CNNKERN_MAX_ALLOC_BYTES"):
            check.memory_limit()


def test_an_8_gib_broadcast_view_is_not_materialised_by_default(plain_target, monkeypatch):
    """The issue's case, under the default limit: an 8 GiB zero-stride view is refused before its copy."""
    _numpy_only(plain_target)
    monkeypatch.delenv("CNNKERN_MAX_ALLOC_BYTES", raising=False)
    if check.memory_limit() >= 2**33:
        pytest.skip(f"this machine's default limit ({check.memory_limit()} bytes) admits an 8 GiB copy")
    x = np.broadcast_to(F32(1), (2**21, 2**10))
    with pytest.raises(check.AllocationTooLargeError, match=r"contiguous copy of x \(2097152, 1024\)"):
        plain_target.call("activation_forward", x, "relu")


def test_a_pool_window_near_2_31_is_checked_in_constant_time():
    """The all-padding window check tests each window in O(1) (it used to walk every tap: 2**31 steps)."""
    assert pool_ops._window_in_padding(1, 2**31 - 1, 1, 2**30 - 1, 1, 1) is None
    assert pool_ops._window_in_padding(4, 3, 3, 1, 2**30, 2) == 0  # taps -1, 2**30 - 1, ...
    for length, k, s, p, d in [(5, 3, 2, 1, 1), (4, 3, 1, 1, 3), (3, 5, 1, 2, 2), (7, 2, 3, 1, 4)]:
        out = shapes.pool_out(length, k, s, p, d, True)
        taps = [[o * s - p + j * d for j in range(k)] for o in range(out)]
        slow = next((o for o, t in enumerate(taps) if not any(0 <= i < length for i in t)), None)
        assert pool_ops._window_in_padding(length, k, s, p, d, out) == slow, (length, k, s, p, d)
