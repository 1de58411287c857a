"""Bad input at the front door (cnnkern.ops), on every backend, raises the type docs/design.md §1 names
(ValueError for values and shapes, TypeError for dtype and array kind, IndexError for labels out of range)
with a message that names the argument; in-place targets that are not contiguous or not writable are
refused."""

import re

import numpy as np
import pytest

from cnnkern import ops
from cnnkern.kernels import TABLE

from .cases import frontdoor_arguments, randn

F32 = np.float32


class Args:
    """The valid arguments on the target's device, float32 (labels and argmax int64), with spoilers."""

    def __init__(self, tg):
        self.tg = tg
        for k, a in frontdoor_arguments().items():
            setattr(self, k, tg.put(a, "int64" if a.dtype.kind in "iu" else F32))

    def put(self, a, dtype=None):
        return self.tg.put(a, dtype)

    def f64(self, a):
        return a.astype(np.float64)

    def noncontig(self, a):
        """Every other element of a twice-as-long last axis: same values, not C-contiguous."""
        big = self.put(np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype))
        big[..., ::2] = a
        return big[..., ::2]

    def readonly(self, a):
        if self.tg.backend.array_module != "numpy":
            pytest.skip("CuPy arrays cannot be marked read-only")
        a = a.copy()
        a.flags.writeable = False
        return a

    # the valid argument lists of each kernel, with keyword overrides
    def conv(self, **kw):
        return (self.x, self.w, self.b), kw

    def pool(self, **kw):
        return (self.x,), {"kernel_size": 2, **kw}

    def bn(self, x=None, gamma=None, beta=None, rm=None, rv=None, **kw):
        given = (x, gamma, beta, rm, rv)
        valid = (self.x, self.gamma, self.beta, self.rm, self.rv)
        return tuple(v if g is None else g for g, v in zip(given, valid)), {"training": True, **kw}

    def sgd(self, velocity=None, **kw):
        return (self.param, self.grad, velocity), {"lr": 0.1, **kw}

    def adam(self, m=None, v=None, **kw):
        return (self.param, self.grad, self.m if m is None else m, self.v if v is None else v), {
            "step": 1,
            **kw,
        }


def A(*args, **kwargs):
    return args, kwargs


# kernel -> [(case id, build(d) -> (args, kwargs), exception type, argument the message must name)]
BAD = {
    "conv2d_forward": [
        ("x-3d", lambda d: A(d.x[0], d.w, d.b), ValueError, "x"),
        ("x-list", lambda d: A(d.tg.get(d.x).tolist(), d.w, d.b), TypeError, "x"),
        ("x-int32", lambda d: A(d.put(np.ones((2, 3, 6, 6), np.int32)), d.w, d.b), TypeError, "x"),
        ("x-float16", lambda d: A(d.x.astype(np.float16), d.w, d.b), TypeError, "x"),
        ("x-empty", lambda d: A(d.x[:, :0], d.w, d.b), ValueError, "x"),
        ("w-channels", lambda d: A(d.x, d.w[:, :2], d.b), ValueError, "w"),
        ("w-float64-mixed", lambda d: A(d.x, d.f64(d.w), d.b), TypeError, "w"),
        ("b-shape", lambda d: A(d.x, d.w, d.b[:3]), ValueError, "b"),
        ("b-float64-mixed", lambda d: A(d.x, d.w, d.f64(d.b)), TypeError, "b"),
        ("groups-not-dividing", lambda d: d.conv(groups=2), ValueError, "groups"),
        ("groups-zero", lambda d: d.conv(groups=0), ValueError, "groups"),
        ("stride-zero", lambda d: d.conv(stride=0), ValueError, "stride"),
        ("stride-float", lambda d: d.conv(stride=1.5), TypeError, "stride"),
        ("stride-triple", lambda d: d.conv(stride=(1, 1, 1)), ValueError, "stride"),
        ("padding-negative", lambda d: d.conv(padding=(1, -1)), ValueError, "padding"),
        ("padding-word", lambda d: d.conv(padding="full"), ValueError, "padding"),
        ("dilation-zero", lambda d: d.conv(dilation=0), ValueError, "dilation"),
        ("output-empty", lambda d: A(d.x[:, :, :2, :2], d.w, d.b), ValueError, "x"),
    ],
    "conv2d_backward": [
        ("dy-shape", lambda d: A(d.dy, d.x, d.w), ValueError, "dy"),
        ("dy-float64", lambda d: A(d.f64(d.dy), d.x, d.w, padding=1), TypeError, "dy"),
        ("need_dx-int", lambda d: A(d.dy, d.x, d.w, padding=1, need_dx=1), TypeError, "need_dx"),
    ],
    "maxpool2d_forward": [
        ("x-2d", lambda d: A(d.x[0, 0], kernel_size=2), ValueError, "x"),
        ("kernel-zero", lambda d: d.pool(kernel_size=0), ValueError, "kernel_size"),
        ("padding-over-half", lambda d: d.pool(kernel_size=3, padding=2), ValueError, "padding"),
        ("stride-zero", lambda d: d.pool(stride=0), ValueError, "stride"),
        ("dilation-zero", lambda d: d.pool(dilation=0), ValueError, "dilation"),
        ("ceil_mode-int", lambda d: d.pool(ceil_mode=1), TypeError, "ceil_mode"),
        ("output-empty", lambda d: d.pool(kernel_size=7), ValueError, "kernel_size"),
        ("return_argmax-str", lambda d: d.pool(return_argmax="no"), TypeError, "return_argmax"),
    ],
    "maxpool2d_backward": [
        ("argmax-int32", lambda d: A(d.pdy, d.arg.astype(np.int32), d.x.shape), TypeError, "argmax"),
        ("argmax-float", lambda d: A(d.pdy, d.arg.astype(F32), d.x.shape), TypeError, "argmax"),
        ("argmax-past-plane", lambda d: A(d.pdy, d.arg + 36, d.x.shape), ValueError, "argmax"),
        ("argmax-negative", lambda d: A(d.pdy, d.arg - 100, d.x.shape), ValueError, "argmax"),
        ("argmax-shape", lambda d: A(d.pdy, d.arg[:, :, :2], d.x.shape), ValueError, "argmax"),
        ("x_shape-3", lambda d: A(d.pdy, d.arg, (2, 3, 6)), ValueError, "x_shape"),
        ("x_shape-zero", lambda d: A(d.pdy, d.arg, (2, 3, 0, 6)), ValueError, "x_shape"),
        ("x_shape-batch", lambda d: A(d.pdy, d.arg, (3, 3, 6, 6)), ValueError, "x_shape"),
    ],
    "maxpool2d_act_backward": [
        ("activation-unknown", lambda d: A(d.pdy, d.arg, d.x, "gelu"), ValueError, "activation"),
        ("activation-none", lambda d: A(d.pdy, d.arg, d.x, None), ValueError, "activation"),
        ("a-3d", lambda d: A(d.pdy, d.arg, d.x[0], "relu"), ValueError, "a"),
        ("a-batch", lambda d: A(d.pdy, d.arg, d.x[:1], "relu"), ValueError, "a"),
        ("dy-float64", lambda d: A(d.f64(d.pdy), d.arg, d.x, "relu"), TypeError, "dy"),
        ("argmax-past-plane", lambda d: A(d.pdy, d.arg + 36, d.x, "relu"), ValueError, "argmax"),
        ("argmax-int32", lambda d: A(d.pdy, d.arg.astype(np.int32), d.x, "relu"), TypeError, "argmax"),
        ("alpha-str", lambda d: A(d.pdy, d.arg, d.x, "leaky_relu", alpha="0.1"), TypeError, "alpha"),
    ],
    "avgpool2d_forward": [
        ("count_include_pad-str", lambda d: d.pool(count_include_pad="no"), TypeError, "count_include_pad"),
        ("padding-pair-over-half", lambda d: d.pool(kernel_size=3, padding=(0, 2)), ValueError, "padding"),
    ],
    "avgpool2d_backward": [
        ("dy-shape", lambda d: A(d.pdy, d.x.shape, kernel_size=3), ValueError, "dy"),
        ("x_shape-int", lambda d: A(d.pdy, 6, kernel_size=2), ValueError, "x_shape"),
    ],
    "batchnorm2d_forward": [
        ("x-3d", lambda d: d.bn(x=d.x[0]), ValueError, "x"),
        ("gamma-shape", lambda d: d.bn(gamma=d.b), ValueError, "gamma"),
        ("beta-float64", lambda d: d.bn(beta=d.f64(d.beta)), TypeError, "beta"),
        ("running_mean-shape", lambda d: d.bn(rm=d.b, training=False), ValueError, "running_mean"),
        ("running_var-float64", lambda d: d.bn(rv=d.f64(d.rv), training=False), TypeError, "running_var"),
        ("running_mean-noncontig", lambda d: d.bn(rm=d.noncontig(d.rm)), ValueError, "running_mean"),
        ("running_var-noncontig", lambda d: d.bn(rv=d.noncontig(d.rv)), ValueError, "running_var"),
        ("running_var-readonly", lambda d: d.bn(rv=d.readonly(d.rv)), ValueError, "running_var"),
        ("momentum-above-1", lambda d: d.bn(momentum=1.5), ValueError, "momentum"),
        ("eps-zero", lambda d: d.bn(eps=0), ValueError, "eps"),
        ("eps-nan", lambda d: d.bn(eps=float("nan")), ValueError, "eps"),
        ("training-str", lambda d: d.bn(training="yes"), TypeError, "training"),
        ("training-one-value", lambda d: d.bn(x=d.x[:1, :, :1, :1]), ValueError, "x"),
    ],
    "batchnorm2d_backward": [
        ("mean-shape", lambda d: A(d.x, d.x, d.gamma, d.b, d.rv), ValueError, "mean"),
        ("invstd-float64", lambda d: A(d.x, d.x, d.gamma, d.rm, d.f64(d.rv)), TypeError, "invstd"),
        ("dy-shape", lambda d: A(d.x[:1], d.x, d.gamma, d.rm, d.rv), ValueError, "dy"),
    ],
    "dense_forward": [
        ("w-fan-in", lambda d: A(d.xd, d.wd[:, :6], d.bd), ValueError, "w"),
        ("x-1d", lambda d: A(d.xd[0], d.wd, d.bd), ValueError, "x"),
        ("b-shape", lambda d: A(d.xd, d.wd, d.bd[:2]), ValueError, "b"),
        ("w-float64-mixed", lambda d: A(d.xd, d.f64(d.wd), d.bd), TypeError, "w"),
    ],
    "dense_backward": [
        ("dy-shape", lambda d: A(d.dyd[:, :3], d.xd, d.wd), ValueError, "dy"),
        ("need_db-int", lambda d: A(d.dyd, d.xd, d.wd, need_db=0), TypeError, "need_db"),
    ],
    "activation_forward": [
        ("kind-unknown", lambda d: A(d.x, "gelu"), ValueError, "kind"),
        ("alpha-str", lambda d: A(d.x, "leaky_relu", alpha="0.1"), TypeError, "alpha"),
        ("alpha-nan", lambda d: A(d.x, "leaky_relu", alpha=float("nan")), ValueError, "alpha"),
    ],
    "activation_backward": [
        ("dy-shape", lambda d: A(d.x[:1], d.x, "relu"), ValueError, "dy"),
        ("dy-float64", lambda d: A(d.f64(d.x), d.x, "tanh"), TypeError, "dy"),
    ],
    "softmax_cross_entropy_forward": [
        ("labels-float", lambda d: A(d.logits, d.labels.astype(F32)), TypeError, "labels"),
        ("labels-list", lambda d: A(d.logits, [0, 1, 2, 3, 0]), TypeError, "labels"),
        ("labels-equal-C", lambda d: A(d.logits, d.labels + 1), IndexError, "labels"),
        ("labels-negative", lambda d: A(d.logits, d.labels - 1), IndexError, "labels"),
        ("labels-length", lambda d: A(d.logits, d.labels[:4]), ValueError, "labels"),
        ("labels-2d", lambda d: A(d.logits, d.labels[:, None]), ValueError, "labels"),
        ("logits-1d", lambda d: A(d.logits[0], d.labels[:1]), ValueError, "logits"),
    ],
    "softmax_cross_entropy_backward": [
        ("labels-range", lambda d: A(d.logits, d.labels * 2), IndexError, "labels"),
        ("probs-3d", lambda d: A(d.x[0], d.labels), ValueError, "probs"),
    ],
    "softmax_cross_entropy_soft_forward": [
        ("targets-shape", lambda d: A(d.logits, d.logits[:, :3]), ValueError, "targets"),
        ("targets-float64", lambda d: A(d.logits, d.f64(d.logits)), TypeError, "targets"),
        ("weights-shape", lambda d: A(d.logits, d.logits, d.logits[0]), ValueError, "weights"),
        ("logits-1d", lambda d: A(d.logits[0], d.logits[0]), ValueError, "logits"),
    ],
    "softmax_cross_entropy_soft_backward": [
        ("targets-3d", lambda d: A(d.logits, d.x), ValueError, "targets"),
        ("weights-2d", lambda d: A(d.logits, d.logits, d.logits), ValueError, "weights"),
    ],
    "sgd_update": [
        ("lr-negative", lambda d: A(d.param, d.grad, None, lr=-0.1), ValueError, "lr"),
        ("lr-str", lambda d: A(d.param, d.grad, None, lr="0.1"), TypeError, "lr"),
        ("velocity-missing", lambda d: d.sgd(momentum=0.9), ValueError, "velocity"),
        ("nesterov-no-momentum", lambda d: d.sgd(nesterov=True), ValueError, "nesterov"),
        ("param-noncontig", lambda d: A(d.noncontig(d.param), d.grad, None, lr=0.1), ValueError, "param"),
        ("param-readonly", lambda d: A(d.readonly(d.param), d.grad, None, lr=0.1), ValueError, "param"),
        ("velocity-noncontig", lambda d: d.sgd(d.noncontig(d.vel), momentum=0.9), ValueError, "velocity"),
        ("grad-shape", lambda d: A(d.param, d.grad[:9], None, lr=0.1), ValueError, "grad"),
        ("grad-float64", lambda d: A(d.param, d.f64(d.grad), None, lr=0.1), TypeError, "grad"),
    ],
    "rmsprop_update": [
        ("lr-inf", lambda d: A(d.param, d.grad, d.m, None, None, lr=float("inf")), ValueError, "lr"),
        ("rho-above-one", lambda d: A(d.param, d.grad, d.m, None, None, rho=1.5), ValueError, "rho"),
        ("eps-nan", lambda d: A(d.param, d.grad, d.m, None, None, eps=float("nan")), ValueError, "eps"),
        ("momentum_buffer-missing", lambda d: A(d.param, d.grad, d.m, None, None, momentum=0.9), ValueError,
         "momentum_buffer"),
        ("grad_avg-missing", lambda d: A(d.param, d.grad, d.m, None, None, centered=True), ValueError,
         "grad_avg"),
        ("square_avg-shape", lambda d: A(d.param, d.grad, d.m[:3], None, None), ValueError, "square_avg"),
        ("grad_avg-float64", lambda d: A(d.param, d.grad, d.m, None, d.f64(d.v), centered=True), TypeError,
         "grad_avg"),
    ],
    "adam_update": [
        ("decoupled-str", lambda d: d.adam(decoupled_weight_decay="yes"), TypeError,
         "decoupled_weight_decay"),
        ("step-zero", lambda d: d.adam(step=0), ValueError, "step"),
        ("step-float", lambda d: d.adam(step=1.0), TypeError, "step"),
        ("step-bool", lambda d: d.adam(step=True), TypeError, "step"),
        ("beta1-one", lambda d: d.adam(beta1=1.0), ValueError, "beta1"),
        ("beta2-negative", lambda d: d.adam(beta2=-0.1), ValueError, "beta2"),
        ("eps_mode-unknown", lambda d: d.adam(eps_mode="tf"), ValueError, "eps_mode"),
        ("weight_decay-negative", lambda d: d.adam(weight_decay=-1.0), ValueError, "weight_decay"),
        ("m-noncontig", lambda d: d.adam(m=d.noncontig(d.m)), ValueError, "m"),
        ("m-shape", lambda d: d.adam(m=d.m[:3]), ValueError, "m"),
        ("v-float64", lambda d: d.adam(v=d.f64(d.v)), TypeError, "v"),
    ],
}  # fmt: skip


# the augmentation kernels (x is (2,3,6,6)); their per-image parameters are built here
def _shift(d, flip=None, offset=None, erase=None, **kw):
    z = lambda cols: d.put(np.zeros((2, cols)), "int64")  # noqa: E731
    return (
        d.x,
        z(2) if flip is None else flip,
        z(2) if offset is None else offset,
        z(4) if erase is None else erase,
    ), kw


BAD_AUGMENT = {
    "augment_shift_forward": [
        ("x-3d", lambda d: A(d.x[0], *_shift(d)[0][1:]), ValueError, "x"),
        ("flip-float", lambda d: _shift(d, flip=d.put(np.zeros((2, 2)), F32)), TypeError, "flip"),
        ("flip-two", lambda d: _shift(d, flip=d.put(np.full((2, 2), 2), "int64")), ValueError, "flip"),
        ("offset-shape", lambda d: _shift(d, offset=d.put(np.zeros((3, 2)), "int64")), ValueError, "offset"),
        ("offset-huge", lambda d: _shift(d, offset=d.put(np.full((2, 2), 2**40), "int64")), ValueError,
         "offset"),
        ("erase-negative-height", lambda d: _shift(d, erase=d.put(np.full((2, 4), -1), "int64")), ValueError,
         "erase"),
        ("out_hw-zero", lambda d: _shift(d, out_hw=0), ValueError, "out_hw"),
    ],
    "augment_affine_forward": [
        ("theta-shape", lambda d: A(d.x, d.put(np.zeros((2, 4)), F32)), ValueError, "theta"),
        ("theta-nan", lambda d: A(d.x, d.put(np.full((2, 6), np.nan), F32)), ValueError, "theta"),
        ("theta-float64", lambda d: A(d.x, d.f64(d.put(np.zeros((2, 6)), F32))), TypeError, "theta"),
        ("fill_value-inf", lambda d: A(d.x, d.put(np.zeros((2, 6)), F32), fill_value=float("inf")),
         ValueError, "fill_value"),
    ],
    "augment_color_forward": [
        ("contrast-shape", lambda d: A(d.x, d.put(np.ones(3), F32), d.put(np.zeros(2), F32)), ValueError,
         "contrast"),
        ("brightness-inf", lambda d: A(d.x, d.put(np.ones(2), F32), d.put(np.full(2, np.inf), F32)),
         ValueError, "brightness"),
        ("high-below-low", lambda d: A(d.x, d.put(np.ones(2), F32), d.put(np.zeros(2), F32), low=1.0,
                                       high=0.0), ValueError, "high"),
    ],
}  # fmt: skip
BAD.update(BAD_AUGMENT)
# the fused kernels' own arguments (their shared ones go through the same checks as the unfused kernels')
BAD_FUSED = {
    "conv2d_bias_act_forward": [
        ("activation-unknown", lambda d: d.conv(activation="gelu"), ValueError, "activation"),
        ("x-3d", lambda d: A(d.x[0], d.w, d.b, activation="relu"), ValueError, "x"),
    ],
    "batchnorm2d_act_forward": [
        ("activation-unknown", lambda d: d.bn(activation="gelu"), ValueError, "activation"),
        ("alpha-negative", lambda d: d.bn(activation="leaky_relu", alpha=-1.0), ValueError, "alpha"),
        ("gamma-shape", lambda d: d.bn(gamma=d.b, activation="relu"), ValueError, "gamma"),
    ],
    "dense_bias_act_forward": [
        ("activation-unknown", lambda d: A(d.xd, d.wd, d.bd, activation="gelu"), ValueError, "activation"),
        ("w-fan-in", lambda d: A(d.xd, d.wd[:, :6], d.bd, activation="relu"), ValueError, "w"),
    ],
    "conv2d_act_maxpool_forward": [
        ("activation-unknown", lambda d: d.conv(pool_size=2, activation="gelu"), ValueError, "activation"),
        ("return_argmax-str", lambda d: d.conv(pool_size=2, return_argmax="no"), TypeError, "return_argmax"),
    ],
    "conv2d_act_maxpool_backward": [
        ("x-3d", lambda d: A(d.pdy, d.pdy, d.arg, d.x[0], d.w, padding=1), ValueError, "x"),
        ("activation-elu", lambda d: A(d.pdy, d.pdy, d.arg, d.x, d.w, activation="elu"), ValueError,
         "activation"),
    ],
    "batchnorm2d_act_maxpool_forward": [
        ("activation-unknown", lambda d: d.bn(pool_size=2, activation="gelu"), ValueError, "activation"),
        ("running_var-shape", lambda d: d.bn(rv=d.b, pool_size=2), ValueError, "running_var"),
        ("pool-larger-than-x", lambda d: d.bn(pool_size=(7, 2)), ValueError, "kernel_size"),
    ],
    "batchnorm2d_act_maxpool_backward": [
        ("argmax-shape", lambda d: A(d.pdy, d.pdy, d.arg[:1], d.x, d.gamma, d.rm, d.rv), ValueError,
         "argmax"),
        ("y-shape", lambda d: A(d.pdy, d.pdy[:1], d.arg, d.x, d.gamma, d.rm, d.rv), ValueError, "y"),
        ("invstd-float64", lambda d: A(d.pdy, d.pdy, d.arg, d.x, d.gamma, d.rm, d.f64(d.rv)), TypeError,
         "invstd"),
        ("argmax-outside-x", lambda d: A(d.pdy, d.pdy, d.arg + 36, d.x, d.gamma, d.rm, d.rv), ValueError,
         "argmax"),
    ],
    "adam_update_multi": [
        ("params-not-list", lambda d: A(d.param, [d.grad], [d.m], [d.v], step=1), TypeError, "params"),
        ("grads-length", lambda d: A([d.param], [], [d.m], [d.v], step=1), ValueError, "grads"),
    ],
}  # fmt: skip
BAD.update(BAD_FUSED)


def _elementwise_cases(kernel):
    """The bad inputs of a kernel with the table's elementwise recipe (its front door is generated, so are
    these): each array given as a list or (after the first) of another shape or dtype; each setting a string,
    NaN or infinite."""
    arrays = [arg.name for arg in kernel.args if arg.positional]
    settings = [arg.name for arg in kernel.args if not arg.positional]

    def args(d, i=None, value=None, **kw):
        return A(*[value if j == i else d.x for j in range(len(arrays))], **kw)

    cases = [(f"{arrays[0]}-list", lambda d: args(d, 0, d.tg.get(d.x).tolist()), TypeError, arrays[0])]
    for i, name in enumerate(arrays[1:], 1):
        cases.append((f"{name}-shape", lambda d, i=i: args(d, i, d.x[:1]), ValueError, name))
        cases.append((f"{name}-float64", lambda d, i=i: args(d, i, d.f64(d.x)), TypeError, name))
    for name in settings:
        cases.append((f"{name}-str", lambda d, name=name: args(d, **{name: "1"}), TypeError, name))
        cases.append((f"{name}-nan", lambda d, name=name: args(d, **{name: float("nan")}), ValueError, name))
        cases.append((f"{name}-inf", lambda d, name=name: args(d, **{name: float("inf")}), ValueError, name))
    return cases


BAD.update(
    {kernel.name: _elementwise_cases(kernel) for kernel in TABLE.values() if kernel.recipe == "elementwise"}
)
CASES = [(kernel,) + case for kernel, cases in BAD.items() for case in cases]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_raises_naming_the_argument(plain_target, case):
    kernel, _, build, exc, name = case
    args, kwargs = build(Args(plain_target))
    with pytest.raises(exc) as info:
        plain_target.call(kernel, *args, **kwargs)
    assert re.search(rf"\b{re.escape(name)}\b", str(info.value)), (
        f"message does not name {name!r}: {info.value}"
    )


def test_every_kernel_has_bad_input_cases():
    front = {name for name, kernel in TABLE.items() if kernel.has_front_door}
    assert set(BAD) == front, f"no cases: {sorted(front - set(BAD))}; not kernels: {sorted(set(BAD) - front)}"


@pytest.mark.parametrize("backend", ["nope", 3, "Reference"])
def test_unknown_backend_name(backend):
    with pytest.raises(ValueError, match=r"\bbackend\b"):
        ops.activation_forward(randn((2, 3), 1), "relu", backend=backend)


def test_float64_on_a_float32_only_backend(plain_target):
    """A backend that does not run float64 refuses it (no silent cast) and says what to do."""
    if "float64" in plain_target.backend.dtypes:
        pytest.skip(f"the {plain_target.id} backend runs float64")
    x = plain_target.put(randn((2, 3, 4, 4), 1))
    with pytest.raises(TypeError, match=r"\bx\b.*float64") as info:
        plain_target.call("activation_forward", x, "relu")
    assert "astype" in str(info.value)


def test_numpy_array_on_the_cuda_backend(plain_target):
    if plain_target.backend.array_module != "cupy":
        pytest.skip(f"the {plain_target.id} backend takes NumPy arrays")
    with pytest.raises(TypeError, match=r"\bx\b.*cupy"):
        plain_target.call("activation_forward", np.ones((2, 3), F32), "relu")
