"""Named training recipes for Fashion-MNIST and the time-to-accuracy run behind ``cnnkern train --recipe``
(docs/recipes.md). A recipe fixes the model (from the zoo or the classic CNN), the augmentation layers, the
learning-rate schedule, the batch size and the epochs; :func:`run_cnnkern` trains it and records the held-out
validation accuracy against the training wall time. ``cnnkern bench --recipe`` runs the same recipe in PyTorch
(:mod:`cnnkern.bench.recipe`) for a like-for-like comparison.

Shared by both frameworks, so that they see the same problem: the validation split (:func:`split_indices`, a
seeded permutation of the training set), the order of the batches (:func:`epoch_order`), the schedule and the
augmentation's distributions (:func:`draw_shift`, the draws of Keras's RandomFlip / RandomTranslation layers).

The schedule is a plain function of the global step (``step -> learning rate``, the call signature of a Keras
``LearningRateSchedule``), applied by setting the optimizer's ``learning_rate`` before each step; any object
with that call can take its place.

The clock: ``train_s`` counts the training steps only (batch gathering, augmentation, forward, backward,
update); the validation passes are not counted, on both sides.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .layers import Layer
    from .models import Sequential

Schedule = Callable[[int], float]  # global step (from 0) -> learning rate
EVAL_BATCH = 256


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    model: str  # a zoo model of 28x28x1 input (cnnkern.bench.zoo), or 'vgg28' / 'bn2' / 'bn64' (below)
    epochs: int
    batch_size: int
    lr: float  # Adam's peak learning rate (PyTorch's form of Adam, on both sides)
    schedule: str = "constant"  # 'constant' or 'warmup_cosine'
    warmup_epochs: float = 0.0
    flip: bool = False  # RandomFlip('horizontal')
    translate: float = 0.0  # RandomTranslation(f, f, interpolation='nearest'): whole-pixel shifts
    val_size: int = 5000  # held out of the training set (at most a tenth of it)
    evals_per_epoch: int = 2
    steps_per_epoch: int | None = None  # None: the whole training set each epoch
    eval_every: int | None = None  # validate every N steps instead of evals_per_epoch times an epoch


_BN2 = Recipe(
    "bn2",
    "two conv-bn-relu-pool blocks (32, 64 channels), dense 512, dropout, flips and +-5% shifts: 93% and 94%",
    "bn2",
    epochs=30,
    batch_size=128,
    lr=2e-3,
    schedule="warmup_cosine",
    warmup_epochs=1.0,
    flip=True,
    translate=0.05,
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "smoke",
            "seconds: classic CNN, flip + shift, warm-up + cosine, 12 steps (a check that all runs)",
            "classic",
            epochs=1,
            batch_size=32,
            lr=2e-3,
            schedule="warmup_cosine",
            warmup_epochs=0.25,
            flip=True,
            translate=0.1,
            val_size=256,
            steps_per_epoch=12,
            eval_every=4,
        ),
        Recipe(
            "classic",
            "today's `cnnkern train` setting: classic CNN, Adam 1e-3, batch 32, no augmentation",
            "classic",
            epochs=10,
            batch_size=32,
            lr=1e-3,
        ),
        Recipe(
            "classic-aug",
            "classic CNN with flips and +-10% shifts, warm-up + cosine",
            "classic",
            epochs=20,
            batch_size=64,
            lr=2e-3,
            schedule="warmup_cosine",
            warmup_epochs=1.0,
            flip=True,
            translate=0.1,
        ),
        Recipe(
            "wide-bn",
            "zoo 'wide_head' (batch norm, dense 1024, dropout) with flips and shifts: validation accuracy "
            "tops at 92.5%",
            "wide_head",
            epochs=15,
            batch_size=128,
            lr=2e-3,
            schedule="warmup_cosine",
            warmup_epochs=1.0,
            flip=True,
            translate=0.1,
        ),
        _BN2,
        # the same recipe on bn2's widths swapped, so that the two differ in the model alone
        replace(
            _BN2,
            name="bn64",
            summary="bn2 with the widths swapped (64 then 32): the 93% recipe, its time spent where cnnkern "
            "leads PyTorch most (batch norm and pooling at 28x28); 93.7% test to bn2's 94.0%",
            model="bn64",
        ),
        Recipe(
            "vgg28",
            "a VGG-style net (2x2 conv-bn-relu, dense 256, dropout) with flips and shifts: the long recipe",
            "vgg28",
            epochs=40,
            batch_size=128,
            lr=2e-3,
            schedule="warmup_cosine",
            warmup_epochs=2.0,
            flip=True,
            translate=0.1,
        ),
    )
}


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)} (or 'list')")
    return RECIPES[name]


def augmentation_text(recipe: Recipe, sep: str = ", ") -> str:
    """The recipe's augmentation in words ('flip, shift 0.05'); '' where it has none."""
    parts = (("flip", recipe.flip), (f"shift {recipe.translate:g}", recipe.translate))
    return sep.join(text for text, on in parts if on)


def listing() -> str:
    width = max(len(n) for n in RECIPES)
    lines = []
    for r in RECIPES.values():
        aug = augmentation_text(r, " + ")
        lines.append(f"{r.name:<{width}}  {r.summary}")
        lines.append(
            f"{'':<{width}}  model {r.model}, {r.epochs} epoch(s), batch {r.batch_size}, Adam lr {r.lr:g} "
            f"{r.schedule}, augmentation: {aug or 'none'}"
        )
    return "\n".join(lines)


# --- schedule ---------------------------------------------------------------------------------------------
def warmup_cosine(base: float, total_steps: int, warmup_steps: int, floor: float = 0.0) -> Schedule:
    """Linear warm-up from base/warmup_steps to base over ``warmup_steps``, then a cosine decay to ``floor``
    at ``total_steps`` (PyTorch's CosineAnnealingLR curve)."""

    def lr(step: int) -> float:
        if step < warmup_steps:
            return base * (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        p = min((step - warmup_steps) / span, 1.0)
        return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return lr


def schedule_for(recipe: Recipe, steps_per_epoch: int) -> Schedule:
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "constant":
        return lambda step: recipe.lr
    if recipe.schedule == "warmup_cosine":
        warm = min(int(round(recipe.warmup_epochs * steps_per_epoch)), total - 1)
        return warmup_cosine(recipe.lr, total, warm)
    raise ValueError(f"recipe {recipe.name}: unknown schedule {recipe.schedule!r}")


# --- data ---------------------------------------------------------------------------------------------------
def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices of a training set of ``n``: a seeded permutation, validation its first
    ``min(val_size, n // 10)`` rows (sorted, disjoint, together all of range(n))."""
    if n < 2:
        raise ValueError(f"need at least 2 training images to hold some out, got {n}")
    k = max(1, min(val_size, n // 10))
    perm = np.random.default_rng([seed, 16]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training rows in ``epoch`` (the same for cnnkern and PyTorch)."""
    return np.random.default_rng([seed, 17, epoch]).permutation(n)


def steps_per_epoch(recipe: Recipe, n: int) -> int:
    full = -(-n // recipe.batch_size)
    return full if recipe.steps_per_epoch is None else min(recipe.steps_per_epoch, full)


def eval_steps(recipe: Recipe, steps: int) -> set[int]:
    """The steps of an epoch (1-based count of steps done) after which validation runs; always the last."""
    every = recipe.eval_every or max(1, steps // max(recipe.evals_per_epoch, 1))
    return set(range(every, steps + 1, every)) | {steps}


def draw_shift(
    rng: np.random.Generator, n: int, h: int, w: int, recipe: Recipe
) -> tuple[np.ndarray, np.ndarray]:
    """(flip (n, 2), offset (n, 2)) as the fused RandomFlip('horizontal') > RandomTranslation('nearest')
    layers draw them from one generator: flips first, then the row shifts, then the column shifts."""
    flip = np.zeros((n, 2), np.int64)
    offset = np.zeros((n, 2), np.int64)
    if recipe.flip:
        flip[:, 0] = rng.integers(0, 2, n)
    if recipe.translate:
        f = recipe.translate
        dy = rng.uniform(-f, f, n) * h
        dx = rng.uniform(-f, f, n) * w
        offset[:] = np.stack([np.round(dy), np.round(dx)], axis=1).astype(np.int64)
    return flip, offset


# --- models -------------------------------------------------------------------------------------------------
def _vgg28() -> list[Layer]:
    from . import layers as L
    from .bench.zoo import conv_bn_relu as block

    return [
        *block(32),
        *block(32),
        L.MaxPooling2D(2),
        *block(64),
        *block(64),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(256, activation="relu"),
        L.Dropout(0.4),
        L.Dense(10, activation="softmax"),
    ]


# two_bn_blocks(c1, c2, units) of the recipe models that are made of two conv-bn-relu-pool blocks
_TWO_BN_BLOCKS = {"bn2": (32, 64, 512), "bn64": (64, 32, 512)}


def model_layers(name: str) -> list[Layer]:
    if name in _TWO_BN_BLOCKS:
        from .bench.zoo import two_bn_blocks

        return two_bn_blocks(*_TWO_BN_BLOCKS[name])
    if name == "vgg28":
        return _vgg28()
    from .bench.zoo import ZOO

    if name not in ZOO or ZOO[name].input_shape != (28, 28, 1):
        ours = ", ".join(map(repr, ["vgg28", *_TWO_BN_BLOCKS]))
        raise ValueError(f"recipe model {name!r}: not {ours} nor a 28x28x1 zoo model")
    return ZOO[name].layers()


def augment_layers(recipe: Recipe) -> list[Layer]:
    from . import layers as L

    out: list[Layer] = []
    if recipe.flip:
        out.append(L.RandomFlip("horizontal"))
    if recipe.translate:
        out.append(L.RandomTranslation(recipe.translate, recipe.translate, interpolation="nearest"))
    return out


def build(recipe: Recipe, backend: Any = None, seed: int = 0, augment: bool = True) -> Sequential:
    """The recipe's model (with its augmentation layers in front when ``augment``), built and compiled with
    Adam (PyTorch's form) at the recipe's peak learning rate."""
    from . import models, optimizers

    layers = (augment_layers(recipe) if augment else []) + model_layers(recipe.model)
    layers[0].input_shape = (28, 28, 1)
    model = models.Sequential(layers, backend=backend, seed=seed)
    model.compile(
        optimizer=optimizers.Adam(learning_rate=recipe.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.build()
    return model


# --- the run ------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one framework's run recorded. ``steps``: one (train_s, loss, batch accuracy) per step;
    ``evals``: one (train_s, epoch as a fraction, val_loss, val_accuracy) per validation."""

    framework: str
    recipe: str
    steps: list[tuple[float, float, float]] = field(default_factory=list)
    evals: list[tuple[float, float, float, float]] = field(default_factory=list)
    target: float | None = None
    reached_s: float | None = None  # train_s when the validation accuracy first reached the target
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")
    wall_s: float = 0.0  # everything: building, training, validation and the test pass


class Trainer:
    """One framework's side of the loop in :func:`train_loop`."""

    framework = ""

    def step(self, idx: np.ndarray, lr: float) -> tuple[float, float]:  # (loss, batch accuracy)
        raise NotImplementedError

    def validate(self) -> tuple[float, float]:
        raise NotImplementedError

    def test(self) -> tuple[float, float]:
        raise NotImplementedError


def train_loop(
    trainer: Trainer,
    recipe: Recipe,
    n_train: int,
    seed: int,
    target: float | None,
    progress: Callable[[str], None] | None,
) -> Run:
    """The loop both frameworks share: batches in :func:`epoch_order`, the schedule set before each step,
    validation at :func:`eval_steps`, stop once the validation accuracy reaches ``target``."""
    start = time.perf_counter()
    run = Run(trainer.framework, recipe.name, target=target)
    steps = steps_per_epoch(recipe, n_train)
    schedule = schedule_for(recipe, steps)
    evals = eval_steps(recipe, steps)
    clock = 0.0
    done = False
    for epoch in range(recipe.epochs):
        order = epoch_order(n_train, seed, epoch)
        for s in range(steps):
            idx = order[s * recipe.batch_size : (s + 1) * recipe.batch_size]
            t0 = time.perf_counter()
            loss, acc = trainer.step(idx, schedule(epoch * steps + s))
            clock += time.perf_counter() - t0
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"{trainer.framework}: loss {loss} at epoch {epoch + 1}, step {s + 1}"
                )
            run.steps.append((clock, loss, acc))
            if s + 1 in evals:
                vloss, vacc = trainer.validate()
                run.evals.append((clock, epoch + (s + 1) / steps, vloss, vacc))
                if progress is not None:
                    progress(
                        f"{trainer.framework}: epoch {epoch + 1}/{recipe.epochs} step {s + 1}/{steps}  "
                        f"train {clock:.1f} s  loss {loss:.4f}  val_accuracy {vacc:.4f}"
                    )
                if target is not None and vacc >= target:
                    run.reached_s = clock
                    done = True
                    break
        if done:
            break
    run.test_loss, run.test_accuracy = trainer.test()
    run.wall_s = time.perf_counter() - start
    return run


class CnnkernTrainer(Trainer):
    framework = "cnnkern"

    def __init__(self, recipe: Recipe, model: Sequential, data: Sequence[np.ndarray], seed: int) -> None:
        from . import training

        x_train, y_train, x_val, y_val, x_test, y_test = data
        self.model, self._training = model, training
        self.X, self.Y = model._to_internal(x_train), model._labels(y_train, len(y_train))
        self.XV, self.YV = model._to_internal(x_val), model._labels(y_val, len(y_val))
        self.test_data = (x_test, y_test)
        xp = model._ctx.xp
        self.xp = xp
        self.xbuf = xp.empty((recipe.batch_size,) + self.X.shape[1:], self.X.dtype)
        self.ybuf = xp.empty(recipe.batch_size, self.Y.dtype)

    def step(self, idx: np.ndarray, lr: float) -> tuple[float, float]:
        m, xp, k = self.model, self.xp, len(idx)
        m.optimizer.learning_rate = lr
        i = xp.asarray(idx)
        xb = self._training._gather(xp, self.X, i, self.xbuf[:k])
        yb = self._training._gather(xp, self.Y, i, self.ybuf[:k])
        loss, probs = self._training.train_step(m, xb, yb, None, 0, False)
        m._ctx.backend.synchronize()
        return float(loss), float((probs.argmax(axis=1) == yb).sum()) / k

    def validate(self) -> tuple[float, float]:
        return self.model._evaluate_internal(self.XV, self.YV, EVAL_BATCH)

    def test(self) -> tuple[float, float]:
        for layer in self.model.layers:
            layer._clear()
        loss, acc = self.model.evaluate(*self.test_data, batch_size=EVAL_BATCH)  # type: ignore[misc]
        return float(loss), float(acc)


def images(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (x.astype(np.float32) / np.float32(255.0)).reshape(len(x), 28, 28, 1)


def prepare(
    recipe: Recipe, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], seed: int
) -> list[np.ndarray]:
    """[x_train, y_train, x_val, y_val, x_test, y_test]: float32 NHWC images, validation held out."""
    (x, y), (xt, yt) = train, test
    tr, va = split_indices(len(x), recipe.val_size, seed)
    return [images(x[tr]), y[tr], images(x[va]), y[va], images(xt), yt]


def run_cnnkern(
    recipe: Recipe,
    data: Sequence[np.ndarray],
    backend: Any = None,
    seed: int = 0,
    target: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Train ``recipe`` with cnnkern on ``data`` (:func:`prepare`); the returned Run's ``wall_s`` counts the
    model's construction too."""
    start = time.perf_counter()
    model = build(recipe, backend=backend, seed=seed)
    run = train_loop(CnnkernTrainer(recipe, model, data, seed), recipe, len(data[0]), seed, target, progress)
    run.wall_s = time.perf_counter() - start
    return run


def with_overrides(recipe: Recipe, **changes: Any) -> Recipe:
    """``recipe`` with the given fields replaced (None values ignored): the command line's overrides."""
    return replace(recipe, **{k: v for k, v in changes.items() if v is not None})


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
