"""Loss objects for :meth:`cnnkern.models.Sequential.compile` (Keras's ``keras.losses``).

* :class:`SparseCategoricalCrossentropy` ('sparse_categorical_crossentropy'): integer labels (N,);
* :class:`CategoricalCrossentropy` ('categorical_crossentropy'): one-hot (or any class-probability) rows
  (N, C), with Keras's ``label_smoothing`` (targets ``y·(1 − ε) + ε/C``).

Both are computed on logits by the fused, numerically stable softmax cross-entropy kernels: a final
``softmax`` (Dense(..., activation='softmax') or an Activation('softmax') layer) hands its pre-softmax values
to the loss during training and evaluation, and still outputs probabilities in ``predict``. With
``from_logits=True`` the final layer must be linear and ``predict`` returns logits, as in Keras.

Per-sample weights (``fit(sample_weight=..., class_weight=...)``, ``evaluate(sample_weight=...)``) follow
Keras: the batch loss is ``Σ w_n·loss_n / N`` (the sum over the batch size); the accuracy is unweighted.
Weighted or soft-target batches go through :func:`cnnkern.ops.softmax_cross_entropy_soft_forward`, the
others through the integer-label kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._typing import BackendArray
    from .backends import Backend

__all__ = ["CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get"]


def _nonnegative(name: str, a: np.ndarray, what: str = "") -> np.ndarray:
    """``a`` as float64, checked to hold finite numbers >= 0 (``what`` ends the error message)."""
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype.name}")
    t = a.astype(np.float64)
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError(f"{name} must hold finite values >= 0{what}")
    return t


class SparseCategoricalCrossentropy:
    """Cross-entropy of integer labels. ``from_logits=False`` (the string
    'sparse_categorical_crossentropy'): the model ends in a softmax; True: it ends in a linear layer."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": "SparseCategoricalCrossentropy", "from_logits": self.from_logits}


class CategoricalCrossentropy:
    """Cross-entropy of one-hot labels (N, C), or of any non-negative class weights per row.
    ``label_smoothing`` ε in [0, 1]: the targets become ``y·(1 − ε) + ε/C`` (Keras's rule; PyTorch's
    cross_entropy with label_smoothing=ε on the same labels). ``from_logits`` as
    :class:`SparseCategoricalCrossentropy`."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        from .ops import check

        self.from_logits = bool(from_logits)
        self.label_smoothing = check.number("label_smoothing", label_smoothing, minimum=0.0, maximum=1.0)

    def targets(self, y: Any, n: int, classes: int, name: str = "y") -> np.ndarray:
        """``y`` checked ((n, classes), finite, >= 0) and smoothed, as float64 NumPy."""
        y = np.asarray(y)
        if y.shape != (n, classes):
            raise ValueError(
                f"{name} must hold one-hot rows of shape ({n}, {classes}) for categorical_crossentropy, got "
                f"{y.shape}; integer labels go with 'sparse_categorical_crossentropy'"
            )
        t = _nonnegative(name, y, " (class probabilities)")
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        return t

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "CategoricalCrossentropy",
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


Loss = SparseCategoricalCrossentropy | CategoricalCrossentropy
_BY_NAME: dict[str, type[Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
}
_BY_CLASS: dict[str, type[Loss]] = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier: str | Loss | dict[str, Any]) -> Loss:
    """The loss object for ``compile(loss=...)``: a loss object, its name or its ``get_config()``."""
    if isinstance(identifier, (SparseCategoricalCrossentropy, CategoricalCrossentropy)):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        cfg = dict(identifier)
        return _BY_CLASS[cfg.pop("class_name")](**cfg)
    raise ValueError(
        f"loss must be 'sparse_categorical_crossentropy', 'categorical_crossentropy' or one of their "
        f"objects, got {identifier!r}"
    )


# --- what the model's steps call ---------------------------------------------------------------------------


def forward(
    logits: BackendArray, y: BackendArray, weights: BackendArray | None, backend: Backend
) -> tuple[BackendArray, BackendArray]:
    """(batch loss, probs): integer labels (N,) without weights through the sparse kernel; soft targets
    (N, C) or weights through the soft-target kernel (integer labels then as one-hot rows)."""
    from . import ops

    if y.ndim == 1 and weights is None:
        return ops.softmax_cross_entropy_forward(logits, y, backend=backend)
    return ops.softmax_cross_entropy_soft_forward(logits, _soft(y, logits), weights, backend=backend)


def backward(
    probs: BackendArray, y: BackendArray, weights: BackendArray | None, backend: Backend
) -> BackendArray:
    from . import ops

    if y.ndim == 1 and weights is None:
        return ops.softmax_cross_entropy_backward(probs, y, backend=backend)
    return ops.softmax_cross_entropy_soft_backward(probs, _soft(y, probs), weights, backend=backend)


def _soft(y: BackendArray, like: BackendArray) -> BackendArray:
    """Integer labels as one-hot rows of ``like``'s shape and dtype; soft targets as they are."""
    if y.ndim == 2:
        return y
    xp = np if isinstance(like, np.ndarray) else __import__("cupy")
    onehot = xp.zeros(like.shape, like.dtype)
    onehot[xp.arange(y.shape[0]), y] = 1
    return onehot


def correct(probs: BackendArray, y: BackendArray) -> BackendArray:
    """How many rows' argmax is the label (categorical accuracy for one-hot rows), as a backend scalar."""
    truth = y.argmax(axis=1) if y.ndim == 2 else y
    return (probs.argmax(axis=1) == truth).sum()


def sample_weights(
    sample_weight: Any, class_weight: Mapping[int, float] | None, labels: np.ndarray, n: int, name: str = ""
) -> np.ndarray | None:
    """Keras's per-sample weights as float64 (n,), or None: ``sample_weight`` (n,) as given, or
    ``class_weight[label]`` per sample (1 for a class it does not list; the argmax of one-hot rows). Both
    at once are refused, as Keras refuses them."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("pass sample_weight or class_weight, not both (Keras refuses both at once)")
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.ndim == 2 and w.shape[1:] == (1,):
            w = w[:, 0]
        if w.shape != (n,):
            raise ValueError(
                f"{name}sample_weight must have shape ({n},), one weight per sample, got {w.shape}"
            )
        return _nonnegative(f"{name}sample_weight", w)
    if class_weight is not None:
        if not isinstance(class_weight, Mapping):
            raise TypeError(
                f"class_weight must be a dict {{class: weight}}, got {type(class_weight).__name__}"
            )
        cw = {int(k): float(v) for k, v in class_weight.items()}
        if not all(np.isfinite(v) and v >= 0 for v in cw.values()):
            raise ValueError(f"class_weight values must be finite and >= 0, got {class_weight}")
        one_hot = labels.ndim == 2 and labels.shape[1] > 1
        cls = (labels.argmax(axis=1) if one_hot else labels.reshape(-1)).astype(np.int64)
        lut = np.ones(max(int(cls.max(initial=0)), *cw, 0) + 1)  # class -> weight, 1 where not listed
        for k, v in cw.items():
            if k >= 0:
                lut[k] = v
        return lut[cls]
    return None
