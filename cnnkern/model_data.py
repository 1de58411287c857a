"""A model's data in and out, for :class:`cnnkern.models.Model` (whose methods delegate here, as ``fit`` does
to :mod:`cnnkern.training`): user arrays to the model's layout on its backend (:func:`to_internal`,
:func:`labels`), and ``evaluate`` / ``predict`` (batches through the model's plan, the callbacks' test and
predict hooks, the progress bar)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import losses, nonfinite
from ._typing import BackendArray
from .layers import to_numpy
from .model_api import Progress

if TYPE_CHECKING:
    from .callbacks import Callback
    from .models import Model


def to_internal(model: Model, x: Any, name: str = "x", check_finite: bool = True) -> BackendArray:
    """User data (N, H, W, C) or (N, features), any real dtype -> the model's dtype, NCHW or (N, F),
    C-contiguous, on the backend: the one layout conversion of the model. ``check_finite``: refuse
    NaN / Inf after the cast (cnnkern.nonfinite)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    model._ensure_built(x)
    want = model._input_shape
    if tuple(x.shape[1:]) != want:
        hint = "; add a channel axis, e.g. x[..., None]" if x.ndim == len(want) and len(want) == 3 else ""
        raise ValueError(
            f"{name} must have shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}{hint}"
        )
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype.name}")
    # transpose and cast where the data is (NumPy input: on the host, so a GPU receives the final
    # float32 NCHW array in one transfer), then move it to the backend
    mod = np if isinstance(x, np.ndarray) else model._ctx.xp
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    # A value beyond the dtype's range becomes inf here, which check_inputs then reports by name: NumPy's
    # overflow warning would only repeat it. Without a cast there is nothing to overflow (and no errstate).
    if x.dtype == model.dtype:
        out = model._ctx.xp.asarray(mod.ascontiguousarray(x))
    else:
        with np.errstate(over="ignore"):
            out = model._ctx.xp.asarray(mod.ascontiguousarray(x, dtype=model.dtype))
    if check_finite:
        nonfinite.check_inputs(out, name, model._ctx.xp)
    return out


def labels(model: Model, y: ArrayLike, n: int, name: str = "y") -> BackendArray:
    if isinstance(model.loss, losses.CategoricalCrossentropy):  # one-hot rows -> smoothed targets
        classes = model._output_shape()[0]
        return model._ctx.asarray(model.loss.targets(to_numpy(y), n, classes, name))
    y = np.asarray(to_numpy(y))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must hold one integer class per sample, shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(y == np.round(y)):
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype.name}")
    classes = model._output_shape()[0]
    if n and (y.min() < 0 or y.max() >= classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise IndexError(
            f"{name} holds class {int(bad)}, outside [0, {classes}) for a model with {classes} outputs"
        )
    return model._ctx.xp.asarray(y.astype(np.int64))


def evaluate_internal(
    model: Model,
    X: BackendArray,
    Y: BackendArray,
    batch_size: int,
    W: BackendArray | None = None,
    callbacks: Sequence[Callback] = (),
    bar: Progress | None = None,
) -> tuple[float, float]:
    """(loss, accuracy) over X, Y; ``callbacks`` get on_test_batch_begin / _end (running logs)."""
    n = X.shape[0]
    loss_sum = correct = 0.0
    for i, lo in enumerate(range(0, n, batch_size)):
        if bar is not None and lo:
            bar.update(i - 1)
        hi = min(lo + batch_size, n)
        for cb in callbacks:
            cb.on_test_batch_begin(i, {})
        wb = None if W is None else W[lo:hi]
        loss, probs = model._loss_and_probs(X[lo:hi], Y[lo:hi], training=False, wb=wb)
        loss_sum = loss_sum + loss * (hi - lo)
        correct = correct + losses.correct(probs, Y[lo:hi])
        if callbacks:
            logs = model._logs(loss_sum, correct, hi)
            for cb in callbacks:
                cb.on_test_batch_end(i, logs)
    return float(loss_sum) / n, float(correct) / n


def evaluate(
    model: Model,
    x: ArrayLike,
    y: ArrayLike,
    batch_size: int | None = None,
    verbose: int = 0,
    return_dict: bool = False,
    sample_weight: ArrayLike | None = None,
    callbacks: Iterable[Callback] | None = None,
) -> float | list[float] | dict[str, float]:
    """``[loss, accuracy]`` (or the loss alone without metrics) over x, y, as Keras returns it;
    ``sample_weight`` (N,) weights each sample's loss (Keras's: the sum over the sample count);
    ``callbacks`` get on_test_begin, on_test_batch_begin / _end and on_test_end."""
    model._require_compiled("evaluate")
    X = model._to_internal(x)
    if X.shape[0] == 0:
        raise ValueError("x holds no samples to evaluate")
    Y = model._labels(y, X.shape[0])
    w = losses.sample_weights(sample_weight, None, to_numpy(Y), X.shape[0])
    W = None if w is None else model._ctx.asarray(w)
    cbs = _started(model, callbacks)
    for cb in cbs:
        cb.on_test_begin({})
    bs = 32 if batch_size is None else int(batch_size)
    bar = Progress(-(-X.shape[0] // bs), verbose)
    loss, acc = evaluate_internal(model, X, Y, bs, W, cbs, bar)
    result = {"loss": loss}
    if model.metrics:
        result[model.metrics[0]] = acc
    for cb in cbs:
        cb.on_test_end(dict(result))
    bar.end(result)
    if return_dict:
        return result
    return list(result.values()) if model.metrics else loss


def predict(
    model: Model,
    x: ArrayLike,
    batch_size: int | None = None,
    verbose: int = 0,
    callbacks: Iterable[Callback] | None = None,
) -> np.ndarray:
    """The model's outputs as a NumPy array: probabilities for a final softmax (logits for a linear
    final layer); image outputs are given back as (N, H, W, C). ``callbacks`` get on_predict_begin,
    on_predict_batch_begin / _end (``logs["outputs"]``: the batch's outputs) and on_predict_end."""
    X = model._to_internal(x)
    bs = 32 if batch_size is None else int(batch_size)
    n = X.shape[0]
    cbs = _started(model, callbacks)
    for cb in cbs:
        cb.on_predict_begin({})
    out = np.empty((n,) + model._output_shape(), model.dtype)
    bar = Progress(-(-n // bs), verbose)
    for i, lo in enumerate(range(0, n, bs)):
        for cb in cbs:
            cb.on_predict_batch_begin(i, {})
        out[lo : lo + bs] = to_numpy(model._forward(X[lo : lo + bs], training=False, logits=False))
        for cb in cbs:
            cb.on_predict_batch_end(i, {"outputs": out[lo : lo + bs]})
        bar.update(i)
    for cb in cbs:
        cb.on_predict_end({})
    bar.end()
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def predict_batch(model: Model, x: ArrayLike) -> np.ndarray:
    """``predict`` of ``x`` as one batch without callbacks (``predict_on_batch``, ``model(x)``): the same
    checks and outputs, without predict's batching, progress bar and output buffer (a batch-1 latency)."""
    X = model._to_internal(x)
    out = to_numpy(model._forward(X, training=False, logits=False))
    if isinstance(X, np.ndarray) and np.may_share_memory(
        out, X
    ):  # an identity model (Flatten, Dropout) hands back x itself
        out = out.copy()
    return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out


def _started(model: Model, callbacks: Iterable[Callback] | None) -> list[Callback]:
    """The callbacks of an evaluate / predict call, each told the model."""
    cbs = list(callbacks or [])
    for cb in cbs:
        cb.set_model(model)
    return cbs
