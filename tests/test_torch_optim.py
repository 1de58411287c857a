"""cnnkern.torch.optim against torch.optim: the same updates (float64 on the reference backend to 1e-12,
float32 on the cpp backend within float32 rounding), the same state_dict both ways, lr schedulers, closures,
channels_last parameters, and the errors for what the kernels do not take."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason='PyTorch not installed: pip install "cnnkern[torch]"')

from cnnkern import backends  # noqa: E402
from cnnkern.torch import optim  # noqa: E402

SHAPES = [(37, 3, 3, 3), (37,), (65, 129), (1,)]  # odd sizes: SIMD tails
CASES: list[tuple[str, type, Any, dict[str, Any]]] = [
    ("sgd", torch.optim.SGD, optim.SGD, dict(lr=0.1)),
    ("sgd-momentum-wd", torch.optim.SGD, optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("sgd-nesterov", torch.optim.SGD, optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", torch.optim.Adam, optim.Adam, dict(lr=1e-2)),
    ("adam-wd", torch.optim.Adam, optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    ("adamw", torch.optim.AdamW, optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    ("adamw-default-decay", torch.optim.AdamW, optim.AdamW, dict(lr=1e-2)),
]


def params(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in SHAPES]


def run(opt: torch.optim.Optimizer, ps: list[torch.nn.Parameter], steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        opt.step()


@pytest.mark.parametrize("name,ref_cls,cls,kw", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_updates_match_torch(
    name: str, ref_cls: type, cls: Any, kw: dict[str, Any], dtype: torch.dtype
) -> None:
    if dtype == torch.float32:
        if backends.probe("cpp") is not None:
            pytest.skip(f"cpp backend unavailable: {backends.probe('cpp')}")
        backends.set_backend("cpp")
    ref, ours = params(dtype), params(dtype)
    run(ref_cls(ref, **kw), ref, 7)
    opt = cls(ours, **kw)
    run(opt, ours, 7)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b, start in zip(ours, ref, params(dtype)):
        torch.testing.assert_close(a.detach(), b.detach(), **tol)
        assert not torch.equal(a.detach(), start.detach())  # it moved
    if name.startswith("adam"):
        assert float(opt.state[ours[0]]["step"]) == 7.0


@pytest.mark.parametrize("name,ref_cls,cls,kw", CASES, ids=[c[0] for c in CASES])
def test_state_dict_moves_both_ways(name: str, ref_cls: type, cls: Any, kw: dict[str, Any]) -> None:
    """3 steps in one, the state_dict loaded into the other, 3 more steps: the same as 6 steps in torch."""
    straight = params(torch.float64)
    run(ref_cls(straight, **kw), straight, 6)
    for first, second in ((ref_cls, cls), (cls, ref_cls)):
        ps = params(torch.float64)
        a = first(ps, **kw)
        run(a, ps, 3)
        b = second(ps, **kw)
        b.load_state_dict(a.state_dict())
        run(b, ps, 3, seed=2)
        check = params(torch.float64)
        ref = ref_cls(check, **kw)
        run(ref, check, 3)
        run(ref, check, 3, seed=2)
        for x, y in zip(ps, check):
            torch.testing.assert_close(x.detach(), y.detach(), rtol=1e-12, atol=1e-12)


def test_scheduler_and_closure() -> None:
    """StepLR changes the lr the kernel uses; step(closure) returns the closure's loss."""
    ps, ref = params(torch.float64), params(torch.float64)
    ours, theirs = optim.Adam(ps, lr=0.1), torch.optim.Adam(ref, lr=0.1)
    s1 = torch.optim.lr_scheduler.StepLR(ours, step_size=2, gamma=0.1)
    s2 = torch.optim.lr_scheduler.StepLR(theirs, step_size=2, gamma=0.1)
    for k in range(5):
        for a, b in zip(ps, ref):
            a.grad = torch.full(a.shape, 0.5 + k, dtype=a.dtype)
            b.grad = a.grad.clone()
        loss = ours.step(lambda: torch.tensor(3.0))
        assert float(loss) == 3.0
        theirs.step()
        s1.step()
        s2.step()
    assert ours.param_groups[0]["lr"] == pytest.approx(1e-3)
    for a, b in zip(ps, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-12)


def test_channels_last_parameter_is_updated_in_place() -> None:
    p = torch.nn.Parameter(torch.randn(8, 3, 3, 3, dtype=torch.float64).to(memory_format=torch.channels_last))
    q = torch.nn.Parameter(p.detach().clone())
    before = p.data_ptr()
    for cls, ref_cls in ((optim.SGD, torch.optim.SGD), (optim.Adam, torch.optim.Adam)):
        kw = dict(lr=0.1, momentum=0.9) if cls is optim.SGD else dict(lr=0.1)
        a, b = cls([p], **kw), ref_cls([q], **kw)
        for _ in range(3):
            p.grad = torch.ones_like(p)
            q.grad = torch.ones_like(q)
            a.step()
            b.step()
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-12)
    assert p.data_ptr() == before and p.is_contiguous(memory_format=torch.channels_last)


def test_unsupported_settings_and_tensors_are_refused() -> None:
    ps = params(torch.float64)
    with pytest.raises(ValueError, match="amsgrad=True is not supported"):
        optim.Adam(ps, amsgrad=True)
    with pytest.raises(ValueError, match="dampening=0.5 is not supported"):
        optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5)
    with pytest.raises(ValueError, match="maximize=True is not supported"):
        optim.AdamW(ps, maximize=True)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD(ps, lr=0.1, nesterov=True)
    half = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    half.grad = torch.ones(4, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"param_groups\[0\]\['params'\]\[0\]: .*float32 or float64.*float16"):
        optim.Adam([half]).step()
    sparse = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    sparse.grad = torch.ones(4, dtype=torch.float64).to_sparse()
    with pytest.raises(TypeError, match="sparse gradients are not supported"):
        optim.SGD([sparse], lr=0.1).step()
