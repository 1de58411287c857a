"""``cnnkern bench --recipe NAME``: a training recipe (:mod:`cnnkern.recipes`) run by cnnkern and by PyTorch
on the same problem, and their time-to-accuracy curves side by side.

Like for like: PyTorch trains the twin (:mod:`.twin`) of the very model cnnkern starts from (same initial
weights), with ``torch.optim.Adam`` (eps 1e-8, cnnkern's Adam in PyTorch's form), the same schedule set
before each step, the same validation split, batches and batch order, and the same augmentation: horizontal
flips and whole-pixel shifts with zero fill written in plain torch ops (:func:`torch_shift`, the semantics of
``augment_shift_forward``), their parameters drawn by :func:`cnnkern.recipes.draw_shift` with the
distributions of cnnkern's RandomFlip / RandomTranslation layers, from a generator started in the state of
cnnkern's model generator: the same parameters for models without dropout (dropout draws from that generator
too, after which the streams part).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..recipes import EVAL_BATCH, Recipe, Run, Trainer, build, train_loop
from ..torch_ref import require_torch
from .twin import nchw, torch_twin


def torch_shift(x: Any, flip: np.ndarray, offset: np.ndarray) -> Any:
    """Per image of the NCHW tensor ``x``: flip left-right where ``flip[n, 0]``, up-down where ``flip[n, 1]``,
    then shift by ``offset[n] = [dy, dx]`` whole pixels (output (i, j) = input (i - dy, j - dx), zero where
    that is outside): ``augment_shift_forward`` without erasing or cropping, exact copies."""
    torch = require_torch()
    n, _, h, w = x.shape
    hflip = torch.as_tensor(flip[:, 0] != 0).view(n, 1, 1, 1)
    vflip = torch.as_tensor(flip[:, 1] != 0).view(n, 1, 1, 1)
    x = torch.where(hflip, x.flip(3), x)
    x = torch.where(vflip, x.flip(2), x)
    rows = torch.arange(h).view(1, h) - torch.as_tensor(offset[:, 0]).view(n, 1)  # (n, h) source rows
    cols = torch.arange(w).view(1, w) - torch.as_tensor(offset[:, 1]).view(n, 1)
    inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
    picked = x[
        torch.arange(n).view(n, 1, 1),
        :,
        rows.clamp(0, h - 1).view(n, h, 1),
        cols.clamp(0, w - 1).view(n, 1, w),
    ]  # (n, h, w, c): the advanced indices' dimensions come first
    return torch.where(inside, picked.permute(0, 3, 1, 2), torch.zeros((), dtype=x.dtype))


class TorchTrainer(Trainer):
    framework = "pytorch"

    def __init__(
        self,
        recipe: Recipe,
        weights: list[np.ndarray],
        data: Sequence[np.ndarray],
        seed: int,
        rng_state: Mapping[str, Any] | None = None,
    ) -> None:
        from ..recipes import draw_shift

        torch = self.torch = require_torch()
        self.recipe, self.draw = recipe, draw_shift
        plain = build(recipe, backend="reference", seed=seed, augment=False)
        plain.set_weights(weights)
        self.net = torch_twin(plain)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=recipe.lr, eps=1e-8)
        x, y, xv, yv, xt, yt = data

        def t(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a))

        self.X, self.Y = t(nchw(x)), t(y.astype(np.int64))
        self.val, self.test_data = (
            (t(nchw(xv)), t(yv.astype(np.int64))),
            (t(nchw(xt)), t(yt.astype(np.int64))),
        )
        self.rng = np.random.default_rng(seed)
        if rng_state is not None:  # cnnkern's model generator as training starts: the same draws
            self.rng.bit_generator.state = rng_state
        self.augment = recipe.flip or recipe.translate > 0

    def step(self, idx: np.ndarray, lr: float) -> tuple[float, float]:
        torch, F = self.torch, self.torch.nn.functional
        i = torch.from_numpy(idx)
        xb, yb = self.X.index_select(0, i), self.Y.index_select(0, i)
        if self.augment:
            flip, offset = self.draw(self.rng, len(idx), xb.shape[2], xb.shape[3], self.recipe)
            xb = torch_shift(xb, flip, offset)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.net.train()
        logits = self.net(xb)
        loss = F.cross_entropy(logits, yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach()), float((logits.argmax(1) == yb).sum()) / len(idx)

    def _evaluate(self, x: Any, y: Any) -> tuple[float, float]:
        torch, F = self.torch, self.torch.nn.functional
        self.net.eval()
        loss_sum = correct = 0.0
        with torch.inference_mode():
            for lo in range(0, len(x), EVAL_BATCH):
                logits = self.net(x[lo : lo + EVAL_BATCH])
                yb = y[lo : lo + EVAL_BATCH]
                loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                correct += float((logits.argmax(1) == yb).sum())
        self.net.train()
        return loss_sum / len(x), correct / len(x)

    def validate(self) -> tuple[float, float]:
        return self._evaluate(*self.val)

    def test(self) -> tuple[float, float]:
        return self._evaluate(*self.test_data)


def run_torch(
    recipe: Recipe,
    data: Sequence[np.ndarray],
    weights: list[np.ndarray],
    seed: int = 0,
    target: float | None = None,
    progress: Callable[[str], None] | None = None,
    rng_state: Mapping[str, Any] | None = None,
) -> Run:
    """Train ``recipe`` in PyTorch from the initial ``weights`` of cnnkern's model (``get_weights``);
    ``rng_state``: the state of that model's generator after building, so the augmentation draws the same
    parameters as cnnkern's layers (exactly so while nothing else draws from it: no dropout)."""
    import time

    start = time.perf_counter()
    trainer = TorchTrainer(recipe, weights, data, seed, rng_state)
    run = train_loop(trainer, recipe, len(data[0]), seed, target, progress)
    run.wall_s = time.perf_counter() - start
    return run


def curve_table(runs: Sequence[Run]) -> str:
    """Each run's validation points (training seconds, epoch, val accuracy), then the time to the target
    (or to each run's best accuracy) and the ratio to the last run."""
    lines = []
    for r in runs:
        lines.append(f"{r.framework}: validation accuracy against training time")
        lines += [f"  {t:9.1f} s  epoch {e:6.2f}  val_accuracy {a:.4f}" for t, e, _, a in r.evals]
    lines.append(time_to_accuracy(runs))
    return "\n".join(lines)


def first_reach(run: Run, accuracy: float) -> float | None:
    return next((t for t, _, _, a in run.evals if a >= accuracy), None)


def time_to_accuracy(runs: Sequence[Run]) -> str:
    """One line per run: test accuracy and the time to the common goal (the target, else the lower of the
    runs' best validation accuracies, so both reach it); then cnnkern's time over PyTorch's."""
    best = [max((a for *_, a in r.evals), default=0.0) for r in runs]
    goal = runs[0].target if runs[0].target is not None else min(best)
    lines = []
    times = []
    for r in runs:
        t = first_reach(r, goal)
        times.append(t)
        reach = f"{t:.1f} s of training" if t is not None else "not reached"
        lines.append(
            f"{r.framework}: val_accuracy {goal:.4f} after {reach}; test accuracy {r.test_accuracy:.4f}; "
            f"wall time {r.wall_s:.1f} s"
        )
    if len(runs) == 2 and times[0] is not None and times[1]:
        lines.append(
            f"time to {goal:.4f}: {runs[0].framework} / {runs[1].framework} = {times[0] / times[1]:.2f}x"
        )
    return "\n".join(lines)
