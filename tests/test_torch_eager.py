"""cnnkern.torch's eager path (cnnkern/torch/_eager.py): in plain eager mode the functional ops run through
an autograd.Function over the custom op's own implementation, setup_context and backward. Same bits as the
dispatcher path for every op and gradient; the dispatcher wherever something could observe the difference
(FakeTensor, meta device, vmap, torch.compile); a clear error on double backward."""

import pytest

from cnnkern import backends

from .conftest import load_backend

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
from cnnkern.torch import _eager, conv_ops, dense_ops, norm_ops, pool_ops  # noqa: E402  (needs torch)
from cnnkern.torch import functional as CF  # noqa: E402

from .test_torch_ops import NAMES, _cases, _run  # noqa: E402

DEFS = {
    name: obj
    for module in (conv_ops, dense_ops, norm_ops, pool_ops)
    for name, obj in vars(module).items()
    if not name.startswith("_") and obj in _eager._impls
}


@pytest.fixture(params=["reference", "cpp"])
def dtype(request):
    """float64 runs on the reference backend, float32 on cpp (the current backend)."""
    if request.param == "reference":
        yield torch.float64
        return
    backends.set_backend(load_backend("cpp"))
    yield torch.float32
    backends.set_backend(None)


@pytest.mark.parametrize("name", NAMES)
def test_eager_path_gives_the_dispatchers_bits(name, dtype, monkeypatch):
    op, args, _, diff = _cases(dtype)[name]
    opdef = DEFS[str(op).split(".")[1]]
    assert _eager.eager(args), "plain CPU tensors in eager mode must take the eager path"
    y, grads = _run(lambda *a: _eager.call(opdef, *a), args, diff)
    y_op, grads_op = _run(op, args, diff)
    assert torch.equal(y, y_op), f"{name}: output"
    for i, (g, g_op) in enumerate(zip(grads, grads_op)):
        assert torch.equal(g, g_op), f"{name}: gradient {i}"


def _conv_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w


def test_functional_and_modules_take_the_eager_path():
    """The fast path is really taken (else the test above would pass without it): the output's grad_fn is
    the eager Function's, not the custom op's autograd node; also for a module's nn.Parameter weights."""
    x, w = _conv_inputs()
    y = CF.conv2d(x, w, activation="relu")
    assert type(y.grad_fn).__name__ == "conv2d_eagerBackward", type(y.grad_fn).__name__
    from cnnkern.torch import modules

    layer = modules.Linear(7, 3).double()
    y = layer(torch.randn(5, 7, dtype=torch.float64))
    assert type(y.grad_fn).__name__ == "linear_eagerBackward", type(y.grad_fn).__name__


def test_dispatch_modes_take_the_custom_op():
    """FakeTensor and the meta device: shapes from the op's fake implementation, no kernel runs."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, w = _conv_inputs()
    w = w.detach()
    with FakeTensorMode() as mode:
        fx, fw = mode.from_tensor(x), mode.from_tensor(w)
        assert not _eager.eager((fx, fw))
        assert CF.conv2d(fx, fw, padding=1).shape == (2, 4, 6, 6)
    with torch.device("meta"):
        assert not _eager.eager(())
        y = CF.linear(torch.empty(5, 7), torch.empty(3, 7))
    assert y.device.type == "meta" and y.shape == (5, 3)


def test_vmap_takes_the_custom_op():
    x, w = _conv_inputs()
    seen = []

    def f(xi):
        seen.append(_eager.eager((xi,)))
        return xi.sum()

    torch.vmap(f)(x)
    assert seen == [False]


def test_compile_takes_the_custom_op():
    """torch.compile traces the custom op (one graph, no break), not the Function."""
    x, w = _conv_inputs()
    explain = torch._dynamo.explain(lambda x, w: CF.conv2d(x, w, activation="tanh"))(x, w)
    assert explain.graph_count == 1 and explain.graph_break_count == 0, explain
    ops = [n.target for g in explain.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert torch.ops.cnnkern.conv2d.default in ops, ops


def test_double_backward_is_a_clear_error():
    """With create_graph=True the backward runs through the dispatcher: differentiating the gradient again
    raises (the kernels' backward has no derivative) instead of treating it as a constant."""
    x, w = _conv_inputs()
    y = CF.conv2d(x, w, activation="tanh")
    (gw,) = torch.autograd.grad(y.sum(), w, create_graph=True)
    assert gw.requires_grad
    with pytest.raises(RuntimeError, match="no autograd formula"):
        (gw.sum() + w.sum()).backward()
