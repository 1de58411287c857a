"""The optimizer objects (cnnkern.optimizers) step by step against torch.optim in float64: SGD (momentum,
Nesterov), Adam, AdamW, RMSprop (momentum, centered), with learning-rate schedules and Keras's gradient
clipping; names, configs and the finite-hyperparameter rule."""

import math

import numpy as np
import pytest

from cnnkern import backends, optimizers, schedules
from cnnkern.layers.base import Context

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)

SHAPES = [(3, 5), (7,), (2, 3, 3, 3), (1,)]
STEPS = 8


def _ctx():
    return Context(backends.get("reference"), "float64", np.random.default_rng(0))


def _grads(t):
    rng = np.random.default_rng(100 + t)
    return [rng.standard_normal(s) for s in SHAPES]


def _run(opt, torch_opt_factory, clip=None, scheduler=None):
    """STEPS steps of ``opt`` (cnnkern, float64 reference) and of torch's optimizer from the same start."""
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch_opt_factory(tparams)
    sched = scheduler(topt) if scheduler is not None else None
    ctx = _ctx()
    for t in range(STEPS):
        grads = _grads(t)
        opt.apply_gradients([((i, "w"), p, g) for i, (p, g) in enumerate(zip(params, grads))], ctx)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        if clip is not None:
            clip(tparams)
        topt.step()
        if sched is not None:
            sched.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            np.testing.assert_allclose(
                p, tp.detach().numpy(), rtol=1e-12, atol=1e-13, err_msg=f"step {t} p{i}"
            )
    return params


@pytest.mark.parametrize(
    "kw",
    [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=1e-2)],
    ids=["plain", "momentum", "nesterov-wd"],
)
def test_sgd_matches_torch(kw):
    opt = optimizers.SGD(learning_rate=0.05, **kw)
    _run(opt, lambda ps: torch.optim.SGD(ps, lr=0.05, **kw))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_matches_torch(wd):
    opt = optimizers.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95, weight_decay=wd)
    _run(opt, lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.95), eps=1e-8, weight_decay=wd))


def test_adamw_matches_torch():
    opt = optimizers.AdamW(learning_rate=0.02, weight_decay=0.1)
    _run(opt, lambda ps: torch.optim.AdamW(ps, lr=0.02, weight_decay=0.1, eps=1e-8))


def test_adamw_defaults_are_keras():
    opt = optimizers.get("adamw")
    assert isinstance(opt, optimizers.AdamW)
    assert (opt.learning_rate, opt.weight_decay, opt.beta_1, opt.beta_2) == (0.001, 0.004, 0.9, 0.999)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(momentum=0.9),
        dict(centered=True),
        dict(momentum=0.5, centered=True, weight_decay=0.05),
    ],
    ids=["plain", "momentum", "centered", "centered-momentum-wd"],
)
def test_rmsprop_matches_torch(kw):
    opt = optimizers.RMSprop(learning_rate=0.01, rho=0.8, epsilon=1e-6, **kw)
    _run(opt, lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.8, eps=1e-6, **kw))


def test_rmsprop_defaults_are_keras():
    opt = optimizers.get("RMSprop")
    assert isinstance(opt, optimizers.RMSprop)
    assert (opt.learning_rate, opt.rho, opt.momentum, opt.epsilon, opt.centered) == (
        1e-3,
        0.9,
        0.0,
        1e-7,
        False,
    )
    assert opt.slot_names == ("square_avg",)


# --- schedules -------------------------------------------------------------------------------------------


def test_exponential_decay_is_keras_formula():
    for staircase in (False, True):
        s = schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5, staircase=staircase)
        for step in range(10):
            p = math.floor(step / 3) if staircase else step / 3
            assert s(step) == pytest.approx(0.1 * 0.5**p, rel=1e-15)


def test_piecewise_constant_boundaries_are_inclusive():
    s = schedules.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [s(t) for t in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="values"):
        schedules.PiecewiseConstantDecay([2, 5], [1.0, 0.5])
    with pytest.raises(ValueError, match="boundaries"):
        schedules.PiecewiseConstantDecay([5, 2], [1.0, 0.5, 0.1])


def test_cosine_decay_matches_torch_cosine_annealing():
    """Without warm-up, Keras's CosineDecay is torch's CosineAnnealingLR with eta_min = alpha·lr0 (held
    after decay_steps, where torch would rise again)."""
    s = schedules.CosineDecay(0.1, decay_steps=6, alpha=0.1)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=0.01)
    for step in range(7):
        assert s(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), step
        opt.step()
        sched.step()
    assert s(100) == pytest.approx(0.01, rel=1e-12)


def test_cosine_decay_warmup_is_keras_formula():
    s = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=0.2, warmup_steps=4)
    assert [s(t) for t in range(5)] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    for t in range(4, 14):
        want = 0.2 * 0.5 * (1 + math.cos(math.pi * (t - 4) / 10))
        assert s(t) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert s(50) == pytest.approx(0.0, abs=1e-15)


def test_one_cycle_matches_torch():
    total = 20
    s = schedules.OneCycle(0.5, total_steps=total, pct_start=0.25)
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.5, total_steps=total, pct_start=0.25, cycle_momentum=False
    )
    for step in range(total):
        assert s(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), step
        opt.step()
        sched.step()


def test_schedule_drives_the_optimizer_like_a_torch_scheduler():
    """learning_rate=schedule: step t uses schedule(t) (t = steps taken before it), as a torch scheduler
    stepped after each optimizer step."""
    sched = schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.7)
    opt = optimizers.SGD(learning_rate=sched, momentum=0.9)
    _run(
        opt,
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 0.7 ** (t / 2)),
    )
    assert opt.learning_rate == pytest.approx(sched(STEPS))
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        opt.learning_rate = 0.5


def test_schedule_config_round_trips():
    for s in (
        schedules.ExponentialDecay(0.1, 5, 0.9, staircase=True),
        schedules.PiecewiseConstantDecay([3], [0.1, 0.01]),
        schedules.CosineDecay(0.0, 10, alpha=0.05, warmup_target=0.1, warmup_steps=2),
        schedules.OneCycle(0.3, 50),
    ):
        opt = optimizers.get(optimizers.Adam(learning_rate=s, clipnorm=1.0).get_config())
        assert opt.get_config() == optimizers.Adam(learning_rate=s, clipnorm=1.0).get_config()
        assert [opt.schedule(t) for t in range(12)] == [s(t) for t in range(12)]


# --- clipping --------------------------------------------------------------------------------------------


def _keras_clip_by_norm(g, c):
    n = np.sqrt(np.sum(g * g))
    return g * c / max(n, c)


def test_clipnorm_is_per_gradient():
    opt = optimizers.SGD(learning_rate=1.0, clipnorm=0.7)
    grads = _grads(0)
    clipped = opt._clip([((i, "w"), None, g) for i, g in enumerate(grads)], np)
    for (_, _, got), g in zip(clipped, grads):
        np.testing.assert_allclose(got, _keras_clip_by_norm(g, 0.7), rtol=1e-14)
        assert np.linalg.norm(got) <= 0.7 * (1 + 1e-12)


def test_global_clipnorm_scales_all_gradients_together():
    """Keras's clip_by_global_norm: every gradient times c / max(global norm, c); then through
    apply_gradients against torch's SGD on gradients clipped the same way."""
    opt = optimizers.SGD(learning_rate=0.1, global_clipnorm=1.5)
    grads = _grads(0)
    total = np.sqrt(sum(np.sum(g * g) for g in grads))
    clipped = opt._clip([((i, "w"), None, g) for i, g in enumerate(grads)], np)
    for (_, _, got), g in zip(clipped, grads):
        np.testing.assert_allclose(got, g * 1.5 / total, rtol=1e-14)
    _run(
        optimizers.SGD(learning_rate=0.1, global_clipnorm=1.5),
        lambda ps: torch.optim.SGD(ps, lr=0.1),
        clip=_torch_global_clip(1.5),
    )


def _torch_global_clip(c):
    """Keras's global-norm rule on torch gradients (torch's clip_grad_norm_ divides by norm + 1e-6)."""

    def clip(ps):
        total = float(torch.sqrt(sum((p.grad * p.grad).sum() for p in ps)))
        for p in ps:
            p.grad.mul_(c / max(total, c))

    return clip


def test_clipvalue_after_clipnorm():
    opt = optimizers.SGD(learning_rate=1.0, clipnorm=2.0, clipvalue=0.3)
    grads = _grads(1)
    clipped = opt._clip([((i, "w"), None, g) for i, g in enumerate(grads)], np)
    for (_, _, got), g in zip(clipped, grads):
        np.testing.assert_allclose(got, np.clip(_keras_clip_by_norm(g, 2.0), -0.3, 0.3), rtol=1e-14)
    small = [np.full(3, 1e-3)]
    assert opt._clip([((0, "w"), None, small[0])], np)[0][2] is not None
    np.testing.assert_array_equal(opt._clip([((0, "w"), None, small[0])], np)[0][2], small[0])


def test_clipvalue_matches_torch_clip_grad_value():
    _run(
        optimizers.Adam(learning_rate=0.01, clipvalue=0.5),
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        clip=lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.5),
    )


def test_clipnorm_and_global_clipnorm_exclude_each_other():
    with pytest.raises(ValueError, match="clipnorm"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)


# --- names, configs, hyperparameters ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "SGD", "Adam", "AdamW", "RMSprop"])
def test_names_and_config_round_trip(name):
    opt = optimizers.get(name)
    again = optimizers.get(opt.get_config())
    assert type(again) is type(opt) and again.get_config() == opt.get_config()


@pytest.mark.parametrize(
    "cls,arg",
    [
        (optimizers.RMSprop, "learning_rate"),
        (optimizers.RMSprop, "rho"),
        (optimizers.RMSprop, "epsilon"),
        (optimizers.RMSprop, "momentum"),
        (optimizers.AdamW, "weight_decay"),
        (optimizers.SGD, "clipnorm"),
        (optimizers.Adam, "clipvalue"),
        (optimizers.Adam, "global_clipnorm"),
    ],
)
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_hyperparameters_must_be_finite(cls, arg, bad):
    with pytest.raises(ValueError, match=arg):
        cls(**{arg: bad})


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match="rmsprop"):
        optimizers.get("adagrad")
