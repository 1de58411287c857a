"""Keras-style :class:`Sequential` model over :mod:`cnnkern.layers`, plus :func:`load_model`.

Backend: ``Sequential(backend=...)`` or ``compile(backend=...)``, else :func:`cnnkern.set_backend`, else
``CNNKERN_BACKEND``, else auto; fixed when the model is built, changed with :meth:`Sequential.to_backend`
(which converts every array). Parameters, optimizer state and activations live on that backend (NumPy
arrays, or CuPy for cuda); ``predict`` returns NumPy.

Loss: :mod:`cnnkern.losses`. Saving and loading: :mod:`cnnkern.saving`.
NaN / Inf inputs and losses follow :mod:`cnnkern.nonfinite`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import backends, losses, nonfinite, ops, optimizers
from . import layers as layers_mod
from ._typing import BackendArray, Logs, PathLike, Shape
from .layers import Context, Layer, keras_shape, to_numpy
from .losses import SparseCategoricalCrossentropy
from .saving import FORMAT, FORMAT_VERSION, load_model, save_model

if TYPE_CHECKING:
    from .backends.base import Backend
    from .callbacks import Callback, History
    from .optimizers import Optimizer

__all__ = ["Sequential", "SparseCategoricalCrossentropy", "load_model"]

_ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy")


def _output_shape(layer: Layer) -> Shape:
    """The per-sample output shape of a built layer (internal layout)."""
    assert layer.output_shape is not None, f"{layer.name} is not built"
    return layer.output_shape


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


class Sequential:
    """A linear stack of layers. ``seed`` seeds the one generator used for initialisation, shuffling and
    dropout; ``dtype`` is 'float32' (every backend) or 'float64' (the reference backend)."""

    # set by build(): the per-sample input shape (Keras order) and the index of the first layer with weights
    _input_shape: Shape
    _first_param: int

    def __init__(
        self,
        layers: Iterable[Layer] | None = None,
        name: str = "sequential",
        *,
        backend: str | Backend | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
    ) -> None:
        self.name = name
        self.layers: list[Layer] = []
        self._backend_arg = backend
        if backend is not None and not isinstance(backend, backends.Backend):
            backends._check_name(backend)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.rng = np.random.default_rng(seed)
        # None until build(); everything that reads it runs after build (see `built`)
        self._ctx: Context = None  # type: ignore[assignment]
        # None until compile(); everything that reads them runs after compile (see `compiled`)
        self.optimizer: Optimizer = None  # type: ignore[assignment]
        self.loss: SparseCategoricalCrossentropy = None  # type: ignore[assignment]
        self.metrics: list[str] = []
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None
        for layer in layers or ():
            self.add(layer)

    # --- building ----------------------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, layers_mod.Layer):
            raise TypeError(f"layer must be a cnnkern.layers.Layer, got {type(layer).__name__}")
        if self.built:
            raise ValueError("cannot add layers to a model that is already built")
        if layer.input_shape is not None and self.layers:
            raise ValueError(
                f"input_shape is only allowed on the first layer, got it on {type(layer).__name__}"
            )
        base = layer.name or _snake(type(layer).__name__)
        taken = {l.name for l in self.layers}
        name, i = base, 0
        while name in taken:
            if layer.name is not None:
                raise ValueError(f"layer name {layer.name!r} is used twice in model {self.name!r}")
            i += 1
            name = f"{base}_{i}"
        layer.name = name
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return self._ctx is not None

    @property
    def backend(self) -> Backend:
        """The Backend the model runs on (resolved now if the model is not built yet)."""
        return self._ctx.backend if self._ctx else backends.resolve(self._backend_arg)

    @property
    def input_shape(self) -> Shape | None:
        """Per-sample input in Keras's order: (H, W, C) or (features,); None until known."""
        return self._input_shape if self.built else (self.layers[0].input_shape if self.layers else None)

    def _context(self, backend: str | Backend | None) -> Context:
        be = backends.resolve(backend)
        if self.dtype.name not in be.dtypes:
            raise ValueError(
                f"the {be.name!r} backend runs {', '.join(be.dtypes)}, not this model's dtype "
                f"{self.dtype.name}"
            )
        return Context(be, self.dtype, self.rng)

    def build(self, input_shape: Sequence[int] | None = None) -> None:
        """Create every layer's weights for the per-sample ``input_shape`` ((H, W, C) or (features,);
        default: the first layer's ``input_shape``)."""
        if self.built:
            if input_shape is not None and tuple(input_shape) != self._input_shape:
                raise ValueError(
                    f"the model is built for input shape {self._input_shape}, got {tuple(input_shape)}"
                )
            return
        if not self.layers:
            raise ValueError("the model has no layers; add some before building it")
        shape = tuple(input_shape) if input_shape is not None else self.layers[0].input_shape
        if shape is None:
            raise ValueError(
                "input shape unknown: pass input_shape= to the first layer, call build(input_shape) "
                "or fit/predict on data"
            )
        if len(shape) not in (1, 3):
            raise ValueError(f"input_shape must be (H, W, C) or (features,), got {shape}")
        ctx = self._context(self._backend_arg)
        internal = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
        from ._modelfile import dry_build  # sizes checked before any weight is allocated

        dry_build(self.layers, internal, self.dtype)
        for layer in self.layers:
            internal = layer.build(internal, ctx)
        # a max pool right after a Conv2D runs with it as one kernel pair (ops.conv2d_act_maxpool_*); after
        # any other layer with an activation, it applies that activation's gradient in its own backward pass
        for prev, layer in zip(self.layers, self.layers[1:]):
            if not isinstance(layer, layers_mod.MaxPooling2D):
                continue
            conv = prev if isinstance(prev, layers_mod.Conv2D) and prev.can_fuse_pool() else None
            layer.conv_source = conv
            if conv is not None:
                conv.pool_sink = layer
            layer.act_source = prev if conv is None and hasattr(prev, "take_activation") else None
        self._input_shape = tuple(int(d) for d in shape)
        self._ctx = ctx
        self._first_param = next((i for i, l in enumerate(self.layers) if l.params), len(self.layers))

    def to_backend(self, backend: str | Backend) -> Sequential:
        """Move the model (weights, running statistics, optimizer state) to ``backend``; returns self."""
        ctx = self._context(backend)
        if self.built:
            for layer in self.layers:
                layer.to_context(ctx)
            if self.optimizer is not None:
                self.optimizer.to_context(ctx)
            self._ctx = ctx
        self._backend_arg = ctx.backend
        return self

    # --- compiling -----------------------------------------------------------------------------------
    def compile(
        self,
        optimizer: str | Optimizer | dict[str, Any] = "adam",
        loss: str | SparseCategoricalCrossentropy | dict[str, Any] = "sparse_categorical_crossentropy",
        metrics: Sequence[str] | None = None,
        backend: str | Backend | None = None,
    ) -> None:
        """``optimizer``: 'adam', 'sgd' or an optimizer object; ``loss``: 'sparse_categorical_crossentropy'
        or SparseCategoricalCrossentropy(from_logits=...); ``metrics``: None or ['accuracy'];
        ``backend``: run on this backend (moving the weights if the model is already built)."""
        if not self.layers:
            raise ValueError("the model has no layers; add some before compiling it")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        metrics = list(metrics or [])
        for m in metrics:
            if m not in _ACCURACY_NAMES:
                raise ValueError(f"metrics may hold {', '.join(repr(n) for n in _ACCURACY_NAMES)}, got {m!r}")
        self.metrics = ["accuracy" if m == "acc" else m for m in metrics]
        final = getattr(self.layers[-1], "activation", "linear")
        want = "linear" if self.loss.from_logits else "softmax"
        if final != want:
            raise ValueError(
                f"sparse_categorical_crossentropy with from_logits={self.loss.from_logits} needs the "
                f"last layer to have activation {want!r}, but {self.layers[-1].name} has {final!r}"
            )
        if backend is not None:
            if self.built:
                self.to_backend(backend)
            else:
                if isinstance(backend, str):
                    backends._check_name(backend)
                self._backend_arg = backend
        self.compiled = True

    # --- data --------------------------------------------------------------------------------------------
    def _ensure_built(self, x: Any) -> None:
        if not self.built:
            self.build(None if self.layers and self.layers[0].input_shape else tuple(x.shape[1:]))

    def _to_internal(self, x: Any, name: str = "x", check_finite: bool = True) -> BackendArray:
        """User data (N, H, W, C) or (N, features), any real dtype -> the model's dtype, NCHW or (N, F),
        C-contiguous, on the backend: the one layout conversion of the model. ``check_finite``: refuse
        NaN / Inf after the cast (cnnkern.nonfinite)."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = np.asarray(x)
        self._ensure_built(x)
        want = self._input_shape
        if tuple(x.shape[1:]) != want:
            hint = "; add a channel axis, e.g. x[..., None]" if x.ndim == len(want) and len(want) == 3 else ""
            raise ValueError(
                f"{name} must have shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}{hint}"
            )
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {x.dtype.name}")
        # transpose and cast where the data is (NumPy input: on the host, so a GPU receives the final
        # float32 NCHW array in one transfer), then move it to the backend
        mod = np if isinstance(x, np.ndarray) else self._ctx.xp
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        # A value beyond the dtype's range becomes inf here, which check_inputs then reports by name: NumPy's
        # overflow warning would only repeat it.
        with np.errstate(over="ignore"):
            out = self._ctx.xp.asarray(mod.ascontiguousarray(x, dtype=self.dtype))
        if check_finite:
            nonfinite.check_inputs(out, name, self._ctx.xp)
        return out

    def _labels(self, y: ArrayLike, n: int, name: str = "y") -> BackendArray:
        y = np.asarray(to_numpy(y))
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{name} must hold one integer class per sample, shape ({n},), got {y.shape}")
        if y.dtype.kind not in "iu":
            if y.dtype.kind != "f" or not np.all(y == np.round(y)):
                raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype.name}")
        classes = _output_shape(self.layers[-1])[0]
        if n and (y.min() < 0 or y.max() >= classes):
            bad = y.min() if y.min() < 0 else y.max()
            raise IndexError(
                f"{name} holds class {int(bad)}, outside [0, {classes}) for a model with {classes} outputs"
            )
        return self._ctx.xp.asarray(y.astype(np.int64))

    # --- running -----------------------------------------------------------------------------------------
    def _forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, training=training, logits=logits and i == last)
        return x

    def _loss_and_probs(
        self, xb: BackendArray, yb: BackendArray, training: bool
    ) -> tuple[BackendArray, BackendArray]:
        logits = self._forward(xb, training=training, logits=True)
        return ops.softmax_cross_entropy_forward(logits, yb, backend=self._ctx.backend)

    def _gradients(self, xb: BackendArray, yb: BackendArray) -> tuple[BackendArray, BackendArray]:
        """Forward in training mode and backward: (loss, probs), each layer's ``grads`` filled in. Layers
        before the first one with parameters are not back-propagated through."""
        loss, probs = self._loss_and_probs(xb, yb, training=True)
        d = ops.softmax_cross_entropy_backward(probs, yb, backend=self._ctx.backend)
        for i in range(len(self.layers) - 1, self._first_param - 1, -1):
            d = self.layers[i].backward(d, need_dx=i > self._first_param)
        return loss, probs

    def _train_step(
        self, xb: BackendArray, yb: BackendArray, epoch: int | None = None, step: int = 0, check: bool = True
    ) -> tuple[BackendArray, BackendArray]:
        from . import training

        return training.train_step(self, xb, yb, epoch, step, check)

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"call compile() before {what}()")

    def train_on_batch(self, x: ArrayLike, y: ArrayLike) -> float | list[float]:
        """One optimizer step on the batch (x, y); returns ``[loss, accuracy]`` (the loss alone without
        metrics) from that step's forward pass, i.e. before the update, as Keras does."""
        self._require_compiled("train_on_batch")
        X = self._to_internal(x)
        Y = self._labels(y, X.shape[0])
        loss, probs = self._train_step(X, Y, step=self.optimizer.iterations)
        for layer in self.layers:
            layer._clear()
        if not self.metrics:
            return float(loss)
        return [float(loss), float((probs.argmax(axis=1) == Y).sum()) / X.shape[0]]

    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: Iterable[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        stop_on_nonfinite: bool = True,
    ) -> History:
        """Train; returns a :class:`cnnkern.callbacks.History`. ``validation_split`` holds out the LAST
        fraction of x/y (before shuffling), as Keras does.

        ``stop_on_nonfinite`` (default True): refuse x / validation x holding NaN or Inf up front
        (:class:`cnnkern.errors.NonFiniteInputError`), and stop at the first step whose loss or gradients
        are not finite with :class:`cnnkern.errors.NonFiniteLossError` naming the epoch and step, that
        step's update not applied (see :mod:`cnnkern.nonfinite`). False: train on regardless.
        A :class:`cnnkern.callbacks.BackupAndRestore` among ``callbacks`` checkpoints the run and resumes it
        after a crash (see :mod:`cnnkern.checkpoint`)."""
        from . import training

        return training.fit(
            self,
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            initial_epoch=initial_epoch,
            stop_on_nonfinite=stop_on_nonfinite,
        )

    def _logs(self, loss_sum: BackendArray | float, correct: BackendArray | float, n: int) -> Logs:
        logs = {"loss": float(loss_sum) / n}
        if self.metrics:
            logs[self.metrics[0]] = float(correct) / n
        return logs

    def _evaluate_internal(self, X: BackendArray, Y: BackendArray, batch_size: int) -> tuple[float, float]:
        n = X.shape[0]
        loss_sum = correct = 0.0
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            loss, probs = self._loss_and_probs(X[lo:hi], Y[lo:hi], training=False)
            loss_sum = loss_sum + loss * (hi - lo)
            correct = correct + (probs.argmax(axis=1) == Y[lo:hi]).sum()
        return float(loss_sum) / n, float(correct) / n

    def evaluate(
        self,
        x: ArrayLike,
        y: ArrayLike,
        batch_size: int | None = None,
        verbose: int = 0,
        return_dict: bool = False,
    ) -> float | list[float] | dict[str, float]:
        """``[loss, accuracy]`` (or the loss alone without metrics) over x, y, as Keras returns it."""
        self._require_compiled("evaluate")
        X = self._to_internal(x)
        if X.shape[0] == 0:
            raise ValueError("x holds no samples to evaluate")
        Y = self._labels(y, X.shape[0])
        start = time.perf_counter()
        loss, acc = self._evaluate_internal(X, Y, 32 if batch_size is None else int(batch_size))
        result = {"loss": loss}
        if self.metrics:
            result[self.metrics[0]] = acc
        if verbose:
            text = " - ".join(f"{k}: {v:.4f}" for k, v in result.items())
            print(f"{X.shape[0]} samples - {time.perf_counter() - start:.1f}s - {text}")
        if return_dict:
            return result
        return list(result.values()) if self.metrics else loss

    def predict(self, x: ArrayLike, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """The model's outputs as a NumPy array: probabilities for a final softmax (logits for a linear
        final layer); image outputs are given back as (N, H, W, C)."""
        X = self._to_internal(x)
        bs = 32 if batch_size is None else int(batch_size)
        n = X.shape[0]
        out = np.empty((n,) + _output_shape(self.layers[-1]), self.dtype)
        for lo in range(0, n, bs):
            out[lo : lo + bs] = to_numpy(self._forward(X[lo : lo + bs], training=False, logits=False))
        if verbose:
            print(f"predicted {n} samples")
        return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out

    # --- inspection ----------------------------------------------------------------------------------
    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """A table: layer (type), output shape (Keras order), parameter count; then the totals."""
        self.build()
        rows = [
            (f"{l.name} ({type(l).__name__})", str(keras_shape(_output_shape(l))), f"{l.count_params():,}")
            for l in self.layers
        ]
        w0 = max(28, *(len(r[0]) + 2 for r in rows))
        w1 = max(22, *(len(r[1]) + 2 for r in rows))
        width = w0 + w1 + 12
        trainable = sum(int(a.size) for l in self.layers if l.trainable for a in l.params.values())
        total = self.count_params()
        lines = [
            f'Model: "{self.name}"  (backend: {self._ctx.backend.name}, {self.dtype.name})',
            "_" * width,
            f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>10}",
            "=" * width,
        ]
        lines += [f"{a:<{w0}}{b:<{w1}}{c:>10}" for a, b, c in rows]
        lines += [
            "=" * width,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "_" * width,
        ]
        print_fn("\n".join(lines))

    # --- weights, save and load -------------------------------------------------------------------------
    def _weight_items(self) -> Iterator[tuple[str, Layer, dict[str, BackendArray], str]]:
        """(key, layer, dict, name) for every saved array, in a fixed order."""
        for i, layer in enumerate(self.layers):
            for d in (layer.params, layer.state):
                for k in d:
                    yield f"{i:03d}.{layer.name}/{k}", layer, d, k

    def get_weights(self) -> list[np.ndarray]:
        """Every weight (parameters, then running statistics, layer by layer) as NumPy copies."""
        self.build()
        return [to_numpy(d[k]).copy() for _, _, d, k in self._weight_items()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        self.build()
        items = list(self._weight_items())
        if len(weights) != len(items):
            raise ValueError(f"set_weights needs {len(items)} arrays, got {len(weights)}")
        for (key, _, d, k), w in zip(items, weights):
            w = np.array(to_numpy(w))  # a copy, as Keras: training must not write into the caller's arrays
            if w.shape != tuple(d[k].shape):
                raise ValueError(f"weight {key} must have shape {tuple(d[k].shape)}, got {w.shape}")
            d[k] = self._ctx.asarray(w)

    def get_config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape),  # type: ignore[arg-type]  # None: TypeError, as always
            "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers],
            "compile": None
            if not self.compiled
            else {
                "optimizer": self.optimizer.get_config(),
                "loss": self.loss.get_config(),
                "metrics": self.metrics,
            },
        }

    def export_onnx(self, path: PathLike, *, opset: int = 17) -> None:
        """The model as an ONNX file (input (N, H, W, C) float32, as ``predict`` takes it): see
        :mod:`cnnkern.compress.onnx_export`. Needs ``pip install "cnnkern[onnx]"``."""
        from .compress.onnx_export import export_onnx

        self.build()
        export_onnx(self, path, opset=opset)

    def save(self, path: PathLike) -> None:
        """Architecture and weights to ONE .npz file at exactly ``path``, written atomically (a crash or a
        full disk leaves any previous file at ``path`` as it was; see :mod:`cnnkern.saving`)."""
        save_model(self, path)
