"""Keras-style models over :mod:`cnnkern.layers`: the functional :class:`Model` (``Model(inputs, outputs)``
on :func:`cnnkern.layers.Input` tensors; the layer graph is :mod:`cnnkern.graph`) and :class:`Sequential`
(a linear stack, :mod:`cnnkern.sequential`), which share everything else here; plus :func:`load_model`.

Backend: ``Model(..., backend=...)`` or ``compile(backend=...)``, else :func:`cnnkern.set_backend`, else
``CNNKERN_BACKEND``, else auto; fixed when the model is built, changed with :meth:`Model.to_backend`
(which converts every array). Parameters, optimizer state and activations live on that backend (NumPy
arrays, or CuPy for cuda); ``predict`` returns NumPy.

Loss: :mod:`cnnkern.losses`. Saving and loading: :mod:`cnnkern.saving`.
NaN / Inf inputs and losses follow :mod:`cnnkern.nonfinite`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import backends, losses, model_data, optimizers
from ._typing import BackendArray, Logs, PathLike, Shape
from .graph import Graph
from .layers import Context, Layer, to_numpy
from .layers.base import weights_changed
from .losses import SparseCategoricalCrossentropy
from .model_api import ModelAPI, Progress, model_from_json
from .plan import Plan
from .saving import FORMAT, FORMAT_VERSION, FUNCTIONAL_FORMAT, load_model, save_model

if TYPE_CHECKING:
    from .backends.base import Backend
    from .callbacks import Callback, History
    from .distributed import MPIStrategy
    from .optimizers import Optimizer

__all__ = ["Model", "Sequential", "SparseCategoricalCrossentropy", "load_model", "model_from_json"]

_ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy")


def _output_shape(layer: Layer) -> Shape:
    """The per-sample output shape of a built layer (internal layout)."""
    assert layer.output_shape is not None, f"{layer.name} is not built"
    return layer.output_shape


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


def _name_layer(layer: Layer, taken: set[str], model: str) -> None:
    """Give ``layer`` a name unique among ``taken`` (its own, or its class's in snake case + a number)."""
    base = layer.name or _snake(type(layer).__name__)
    name, i = base, 0
    while name in taken:
        if layer.name is not None:
            raise ValueError(f"layer name {layer.name!r} is used twice in model {model!r}")
        i += 1
        name = f"{base}_{i}"
    layer.name = name
    taken.add(name)


class Model(ModelAPI):
    """A model of layers called on :func:`cnnkern.layers.Input` tensors (Keras's functional API):
    ``Model(inputs, outputs)`` with one input and one output tensor. ``seed`` seeds the one generator used
    for initialisation, shuffling and dropout; ``dtype`` is 'float32' (every backend) or 'float64' (the
    reference backend). :class:`Sequential` is the special case of a linear stack."""

    # set by build(): the per-sample input shape (Keras order) and the execution plan (cnnkern.plan)
    _input_shape: Shape
    _plan: Plan
    _graph: Graph | None = None

    def __init__(
        self,
        inputs: Any = None,
        outputs: Any = None,
        name: str | None = None,
        *,
        backend: str | Backend | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
    ) -> None:
        if inputs is None or outputs is None:
            raise TypeError(
                "Model needs inputs= and outputs= (KerasTensors); for a stack of layers use Sequential"
            )
        graph = Graph(inputs, outputs)
        self._setup(name or "model", backend, dtype, seed)
        taken: set[str] = set()
        for layer in graph.layers:
            owner = getattr(layer, "_owner", None)
            if owner is not None or layer._ctx is not None:
                raise ValueError(
                    f"layer {layer.name!r} already belongs to model {owner!r}: models sharing layers (e.g. a "
                    f"sub-model of another model's tensors) are not supported; call new layers"
                )
        for layer in graph.layers:
            _name_layer(layer, taken, self.name)
            layer._owner = self.name  # type: ignore[attr-defined]
        self._graph = graph
        self.layers.extend(graph.layers)

    def _setup(self, name: str, backend: str | Backend | None, dtype: DTypeLike, seed: int | None) -> None:
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
        self.loss: losses.Loss = None  # type: ignore[assignment]
        self.metrics: list[str] = []
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None

    # --- building ----------------------------------------------------------------------------------------
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
        return self._input_shape if self.built else self._declared_shape()

    def _declared_shape(self) -> Shape | None:
        """The input shape the model was given before build (its Input's)."""
        assert self._graph is not None
        return self._graph.layers[0].input_shape

    @property
    def _output_layer(self) -> Layer:
        assert self._graph is not None
        return self._graph.layers[self._graph.output]

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
        declared = self._declared_shape()
        shape = tuple(input_shape) if input_shape is not None else declared
        if self._graph is not None and shape != declared:
            raise ValueError(f"the model's Input has shape {declared}, got input_shape {shape}")
        if shape is None:
            raise ValueError(
                "input shape unknown: pass input_shape= to the first layer, call build(input_shape) "
                "or fit/predict on data"
            )
        if len(shape) not in (1, 3):
            raise ValueError(f"input_shape must be (H, W, C) or (features,), got {shape}")
        ctx = self._context(self._backend_arg)
        internal = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
        self._build_layers(internal, ctx)
        self._input_shape = tuple(int(d) for d in shape)
        self._ctx = ctx

    def _build_layers(self, internal: Shape, ctx: Context) -> None:
        """Build the layers for the per-sample input ``internal`` (C, H, W) / (F,) on ``ctx``."""
        assert self._graph is not None
        self._plan = self._graph.build(internal, ctx)

    def to_backend(self, backend: str | Backend) -> Model:
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
        loss: str | losses.Loss | dict[str, Any] = "sparse_categorical_crossentropy",
        metrics: Sequence[str] | None = None,
        backend: str | Backend | None = None,
    ) -> None:
        """``optimizer``: 'adam', 'adamw', 'rmsprop', 'sgd' or an optimizer object; ``loss``:
        'sparse_categorical_crossentropy' (integer labels), 'categorical_crossentropy' (one-hot rows) or
        their objects (``from_logits``, ``label_smoothing``); ``metrics``: None or ['accuracy'];
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
        final = getattr(self._output_layer, "activation", "linear")
        want = "linear" if self.loss.from_logits else "softmax"
        if final != want:
            raise ValueError(
                f"{self.loss.name} with from_logits={self.loss.from_logits} needs the "
                f"last layer to have activation {want!r}, but {self._output_layer.name} has {final!r}"
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
            self.build(None if self._declared_shape() else tuple(x.shape[1:]))

    def _to_internal(self, x: Any, name: str = "x", check_finite: bool = True) -> BackendArray:
        """User data (N, H, W, C) or (N, features) -> the model's dtype and layout on its backend
        (:func:`cnnkern.model_data.to_internal`)."""
        return model_data.to_internal(self, x, name, check_finite)

    def _labels(self, y: ArrayLike, n: int, name: str = "y") -> BackendArray:
        """Labels checked against the model's outputs (:func:`cnnkern.model_data.labels`)."""
        return model_data.labels(self, y, n, name)

    # --- running -----------------------------------------------------------------------------------------
    def _forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        return self._plan.forward(x, training, logits)

    def _loss_and_probs(
        self, xb: BackendArray, yb: BackendArray, training: bool, wb: BackendArray | None = None
    ) -> tuple[BackendArray, BackendArray]:
        logits = self._forward(xb, training=training, logits=True)
        return losses.forward(logits, yb, wb, self._ctx.backend)

    def _gradients(
        self, xb: BackendArray, yb: BackendArray, wb: BackendArray | None = None
    ) -> tuple[BackendArray, BackendArray]:
        """Forward in training mode and backward: (loss, probs), each layer's ``grads`` filled in. Layers
        before the first one with parameters are not back-propagated through. ``wb``: per-sample weights."""
        loss, probs = self._loss_and_probs(xb, yb, training=True, wb=wb)
        d = losses.backward(probs, yb, wb, self._ctx.backend)
        self._backward(d)
        return loss, probs

    def _backward(self, d: BackendArray) -> None:
        """Back-propagate the loss gradient ``d`` (of the logits); each layer's ``grads`` filled in."""
        self._plan.backward(d)

    def _train_step(
        self,
        xb: BackendArray,
        yb: BackendArray,
        epoch: int | None = None,
        step: int = 0,
        check: bool = True,
        wb: BackendArray | None = None,
    ) -> tuple[BackendArray, BackendArray]:
        from . import training

        return training.train_step(self, xb, yb, epoch, step, check, wb)

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"call compile() before {what}()")

    def train_on_batch(
        self,
        x: ArrayLike,
        y: ArrayLike,
        sample_weight: ArrayLike | None = None,
        class_weight: dict[int, float] | None = None,
    ) -> float | list[float]:
        """One optimizer step on the batch (x, y); returns ``[loss, accuracy]`` (the loss alone without
        metrics) from that step's forward pass, i.e. before the update, as Keras does. ``sample_weight`` /
        ``class_weight`` as in :meth:`fit`."""
        self._require_compiled("train_on_batch")
        X = self._to_internal(x)
        Y = self._labels(y, X.shape[0])
        w = losses.sample_weights(sample_weight, class_weight, np.asarray(to_numpy(y)), X.shape[0])
        W = None if w is None else self._ctx.asarray(w)
        loss, probs = self._train_step(X, Y, step=self.optimizer.iterations, wb=W)
        for layer in self.layers:
            layer._clear()
        if not self.metrics:
            return float(loss)
        return [float(loss), float(losses.correct(probs, Y)) / X.shape[0]]

    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int = 1,
        callbacks: Iterable[Callback] | None = None,
        validation_split: float = 0.0,
        validation_data: tuple[ArrayLike, ...] | None = None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        stop_on_nonfinite: bool = True,
        sample_weight: ArrayLike | None = None,
        class_weight: dict[int, float] | None = None,
        distributed: bool | MPIStrategy | None = None,
    ) -> History:
        """Train; returns a :class:`cnnkern.callbacks.History`. ``validation_split`` holds out the LAST
        fraction of x/y (before shuffling), as Keras does.

        ``stop_on_nonfinite`` (default True): refuse x / validation x holding NaN or Inf up front
        (:class:`cnnkern.errors.NonFiniteInputError`), and stop at the first step whose loss or gradients
        are not finite with :class:`cnnkern.errors.NonFiniteLossError` naming the epoch and step, that
        step's update not applied (see :mod:`cnnkern.nonfinite`). False: train on regardless.
        A :class:`cnnkern.callbacks.BackupAndRestore` among ``callbacks`` checkpoints the run and resumes it
        after a crash (see :mod:`cnnkern.checkpoint`). ``distributed``: True (or an
        :class:`cnnkern.distributed.MPIStrategy`) trains data-parallel over the ranks of ``mpirun``.
        ``sample_weight`` (N,) or ``class_weight`` ({class: weight}) weight each sample's loss, as Keras
        (:mod:`cnnkern.losses`); ``validation_data`` may be ``(x, y, sample_weight)``."""
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
            sample_weight=sample_weight,
            class_weight=class_weight,
            distributed=distributed,
        )

    def _logs(self, loss_sum: BackendArray | float, correct: BackendArray | float, n: int) -> Logs:
        logs = {"loss": float(loss_sum) / n}
        if self.metrics:
            logs[self.metrics[0]] = float(correct) / n
        return logs

    def _evaluate_internal(
        self,
        X: BackendArray,
        Y: BackendArray,
        batch_size: int,
        W: BackendArray | None = None,
        callbacks: Sequence[Callback] = (),
        bar: Progress | None = None,
    ) -> tuple[float, float]:
        """(loss, accuracy) over X, Y; ``callbacks`` get on_test_batch_begin / _end (running logs)."""
        return model_data.evaluate_internal(self, X, Y, batch_size, W, callbacks, bar)

    def evaluate(
        self,
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
        return model_data.evaluate(self, x, y, batch_size, verbose, return_dict, sample_weight, callbacks)

    def predict(
        self,
        x: ArrayLike,
        batch_size: int | None = None,
        verbose: int = 0,
        callbacks: Iterable[Callback] | None = None,
    ) -> np.ndarray:
        """The model's outputs as a NumPy array: probabilities for a final softmax (logits for a linear
        final layer); image outputs are given back as (N, H, W, C). ``callbacks`` get on_predict_begin,
        on_predict_batch_begin / _end (``logs["outputs"]``: the batch's outputs) and on_predict_end."""
        return model_data.predict(self, x, batch_size, verbose, callbacks)

    def _output_shape(self) -> Shape:
        """The per-sample output shape (internal layout)."""
        return _output_shape(self._output_layer)

    # --- inspection ----------------------------------------------------------------------------------
    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn: Callable[[str], object] = print, plan: bool = False) -> None:
        """A table: layer (type), output shape (Keras order), parameter count (and, for a functional model,
        the layers each is connected to); then the totals. ``plan``: then the execution plan, its steps in
        order and the kernels each calls forward and backward (:mod:`cnnkern.plan`)."""
        from .summary import summary_text

        self.build()
        print_fn(summary_text(self, plan))

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
        weights_changed()

    def get_config(self) -> dict[str, Any]:
        """The architecture (as saved): a Sequential's layers in order; a functional model's layers each with
        ``inbound``, the names of the layers it is called on (format 'cnnkern-functional')."""
        layers: list[dict[str, Any]] = [
            {"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers
        ]
        g = self._graph
        if g is not None:
            for entry, ins in zip(layers, g.inputs_of):
                entry["inbound"] = [self.layers[j].name for j in ins]
        return {
            "format": FORMAT if g is None else FUNCTIONAL_FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape),  # type: ignore[arg-type]  # None: TypeError, as always
            "layers": layers,
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
        from .compress.fold import check_supported
        from .compress.onnx_export import export_onnx

        self.build()
        check_supported(self, "export_onnx")
        assert isinstance(self, Sequential)  # check_supported refuses anything else
        export_onnx(self, path, opset=opset)

    def save(self, path: PathLike) -> None:
        """Architecture and weights to ONE .npz file at exactly ``path``, written atomically (a crash or a
        full disk leaves any previous file at ``path`` as it was; see :mod:`cnnkern.saving`)."""
        save_model(self, path)


from .sequential import Sequential  # noqa: E402  (a Model subclass: imported after Model is defined)
