"""Keras's model methods written once over a model's public surface, for every model class to inherit
(:class:`cnnkern.models.Sequential` does): ``weights`` / ``trainable_weights`` / ``non_trainable_weights``,
``get_layer``, ``predict_on_batch``, ``test_on_batch``, ``model(x)``, ``to_json`` (and
:func:`model_from_json`), ``save_weights`` / ``load_weights``; and :class:`Progress`, the bar ``evaluate`` and
``predict`` show with ``verbose``.

A model class provides: ``layers`` (built :class:`cnnkern.layers.Layer` objects), ``build()``, ``predict``,
``evaluate``, ``save``, ``get_config()``, ``_to_internal`` (user data to the backend's layout),
``_forward(x, training, logits)`` and ``_weight_items()`` (``(key, layer, dict, name)`` per saved array, in
the file's order), and ``_ctx`` (the layers' :class:`cnnkern.layers.Context`).
"""

from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from numpy.typing import ArrayLike

from ._typing import BackendArray, Logs, PathLike
from .layers import Context, Layer, Variable, to_numpy

if TYPE_CHECKING:
    from .backends.base import Backend
    from .models import Model

__all__ = ["ModelAPI", "Progress", "model_from_json"]


class ModelAPI:
    """The mixin: see the module docstring for what the model class must provide."""

    layers: list[Layer]
    name: str
    _ctx: Context
    build: Callable[..., None]
    predict: Callable[..., np.ndarray]
    evaluate: Callable[..., Any]
    save: Callable[[PathLike], None]
    get_config: Callable[[], dict[str, Any]]
    _to_internal: Callable[..., BackendArray]
    _forward: Callable[[BackendArray, bool, bool], BackendArray]
    _weight_items: Callable[[], Iterator[tuple[str, Layer, dict[str, BackendArray], str]]]

    # --- weights ------------------------------------------------------------------------------------
    @property
    def weights(self) -> list[Variable]:
        """Every weight of every layer, in the order of ``get_weights()`` (the model is built first)."""
        self.build()
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_weights(self) -> list[Variable]:
        self.build()
        return [v for layer in self.layers for v in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        self.build()
        return [v for layer in self.layers for v in layer.non_trainable_weights]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index`` (one of the two, as Keras)."""
        # Keras builds a model whose input shape is known: its layers have weights to show
        if not getattr(self, "built", True) and getattr(self, "input_shape", None) is not None:
            self.build()
        if (name is None) == (index is None):
            raise ValueError(
                f"get_layer needs exactly one of name= or index=, got name={name!r}, index={index!r}"
            )
        if index is not None:
            if not isinstance(index, (int, np.integer)) or not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"index {index!r} is out of range: the model has {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"no layer named {name!r}; the layers are {', '.join(repr(l.name) for l in self.layers)}"
        )

    # --- running one batch -------------------------------------------------------------------------------
    def predict_on_batch(self, x: ArrayLike) -> np.ndarray:
        """The outputs for ``x`` as one batch (as ``predict``, without splitting it)."""
        len(x)  # type: ignore[arg-type]  # an ArrayLike without len() fails here as in Keras
        from .model_data import predict_batch

        return predict_batch(self, x)  # type: ignore[arg-type]

    def test_on_batch(self, x: ArrayLike, y: ArrayLike, return_dict: bool = False) -> Any:
        """Loss (and metrics) of ``x``, ``y`` as one batch in inference mode, nothing updated (as Keras)."""
        n = len(x)  # type: ignore[arg-type]
        return self.evaluate(x, y, batch_size=max(n, 1), verbose=0, return_dict=return_dict)

    def __call__(self, x: ArrayLike, training: bool = False) -> np.ndarray:
        """``model(x)``: the outputs for ``x`` as one batch, a NumPy array (images as (N, H, W, C)).
        ``training=True`` runs the training forward (dropout, batch statistics, batch norm's running
        statistics updated), as Keras does; nothing is kept for a backward pass."""
        if not training:
            return self.predict_on_batch(x)
        X = self._to_internal(x)
        try:
            out = to_numpy(self._forward(X, True, False))
        finally:
            for layer in self.layers:
                layer._clear()
        return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out

    # --- architecture and weights to files --------------------------------------------------------------
    def to_json(self, **kwargs: Any) -> str:
        """The architecture (no weights, no compile settings) as JSON; :func:`model_from_json` rebuilds it.
        ``kwargs`` go to ``json.dumps``."""
        self.build()
        cfg = dict(self.get_config())
        cfg.pop("compile", None)
        return json.dumps({"class_name": type(self).__name__, "config": cfg}, **kwargs)

    def save_weights(self, filepath: PathLike, overwrite: bool = True) -> None:
        """Write the weights to ``filepath`` (atomically; the file also holds the architecture, so
        :func:`cnnkern.models.load_model` reads it too). ``overwrite=False``: refuse an existing file."""
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{filepath} exists and overwrite=False")
        self.save(filepath)

    def load_weights(self, filepath: PathLike) -> None:
        """Set the weights from a file written by ``save_weights`` or ``save``, matched by position (as
        Keras): the file must hold as many weights, each of the same name within its layer and the same
        shape; layer names may differ. Values are cast to this model's dtype. The file is untrusted: headers
        are checked before any array is read, pickles are refused."""
        from . import _modelfile

        self.build()
        items = list(self._weight_items())
        text, _ = _modelfile.read_entries(filepath, None, None)
        try:
            dtype = json.loads(text).get("dtype")
        except (json.JSONDecodeError, AttributeError):
            dtype = None
        if dtype not in ("float32", "float64"):
            raise ValueError(f"{filepath}: corrupt architecture entry (no float32 / float64 dtype)")
        with zipfile.ZipFile(filepath) as zf:
            keys = [n[:-4] for n in zf.namelist() if n[:-4] != _modelfile.ARCHITECTURE]

        def position(key: str) -> int:  # the layer's index; within a layer, the file's (= saving) order
            head = key.split(".", 1)[0]
            if not head.isdigit() or "/" not in key:
                raise ValueError(
                    f"{filepath}: entry {key!r} is not a cnnkern weight key '<index>.<layer>/<name>'"
                )
            return int(head)

        keys.sort(key=position)
        if len(keys) != len(items):
            raise ValueError(
                f"{filepath}: holds {len(keys)} weights, the model {self.name!r} has {len(items)}"
            )
        expected = {}
        for key, (mine, _, d, k) in zip(keys, items):
            if key.rsplit("/", 1)[1] != k:
                raise ValueError(
                    f"{filepath}: weight {key} does not match the model's {mine} (different layers)"
                )
            expected[key] = tuple(int(s) for s in d[k].shape)
        _, arrays = _modelfile.read_entries(filepath, expected, dtype)
        for key, (_, _, d, k) in zip(keys, items):
            d[k] = self._ctx.asarray(arrays[key])


def model_from_json(
    json_string: str, custom_objects: Any = None, *, backend: str | Backend | None = None
) -> Model:
    """A new, built model (fresh weights; a Sequential or a functional Model) from :meth:`ModelAPI.to_json`
    output, on ``backend``. The text is
    untrusted input, checked as a saved model's architecture is (:mod:`cnnkern._modelfile`).
    ``custom_objects`` is Keras's argument; custom layers are not supported (it must be None)."""
    from . import _modelfile
    from .saving import FUNCTIONAL_FORMAT

    if custom_objects:
        raise ValueError("custom_objects is not supported: cnnkern rebuilds its own layer classes only")
    where = "model_from_json"
    try:
        data = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    kinds = ("Sequential", "Model")
    if not isinstance(data, dict) or data.get("class_name") not in kinds or "config" not in data:
        got = data.get("class_name") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f'{where}: expected {{"class_name": "Sequential" or "Model", "config": {{...}}}}, got {got!r}'
        )
    cfg = data["config"]
    _modelfile.check_architecture(where, cfg)
    try:
        if cfg["format"] == FUNCTIONAL_FORMAT:  # a functional graph: its layers' inbound lists, checked
            from ._functionalfile import model_and_weights

            model: Model = model_and_weights(where, cfg, backend)[0]
        else:
            _modelfile.expected_weights(where, cfg)  # every layer's config and the sizes they imply first
            model = _modelfile.sequential_of(cfg, backend)
        model.build(tuple(cfg["input_shape"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return model


class Progress:
    """The bar of ``evaluate`` / ``predict``: ``verbose=1`` a bar redrawn at most 10 times a second on a
    terminal (the final line only elsewhere), ``verbose=2`` the final line; then time, time per step and
    the logs."""

    def __init__(self, steps: int, verbose: int, file: TextIO | None = None, width: int = 30) -> None:
        self.steps, self.verbose, self.width = max(int(steps), 1), int(verbose), width
        self.file = file or sys.stdout
        self.live = self.verbose == 1 and hasattr(self.file, "isatty") and self.file.isatty()
        self.start = self.last_draw = time.perf_counter()

    def _bar(self, done_steps: int) -> str:
        done = done_steps * self.width // self.steps
        return "=" * max(done - 1, 0) + (">" if done < self.width else "=") + "." * (self.width - done)

    def update(self, step: int) -> None:
        """After step ``step`` (0-based)."""
        if not self.live or time.perf_counter() - self.last_draw < 0.1:
            return
        self.last_draw = time.perf_counter()
        print(f"\r{step + 1}/{self.steps} [{self._bar(step + 1)}]", end="", file=self.file, flush=True)

    def end(self, logs: Logs | None = None) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.steps}/{self.steps}"]
        if self.verbose == 1:
            parts[0] = ("\r" if self.live else "") + f"{parts[0]} [{self._bar(self.steps)}]"
        text = " - ".join(
            [f"{elapsed:.1f}s {1e3 * elapsed / self.steps:.0f}ms/step"]
            + [f"{k}: {v:.4f}" for k, v in (logs or {}).items()]
        )
        print(f"{parts[0]} - {text}", file=self.file, flush=True)
