"""Saving and loading models (Keras's ``keras.saving``): :func:`save_model` (what
:meth:`cnnkern.models.Model.save` runs) and :func:`load_model`.

Saved models are one ``.npz`` file: an ``__architecture__`` entry (JSON: layers, input shape, dtype,
compile settings) and one array per weight (``<index>.<layer name>/<weight>``), written atomically. Optimizer
moments are not saved: training a loaded model starts them afresh (checkpoints, :mod:`cnnkern.checkpoint`,
keep them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from ._io import atomic_save
from ._typing import PathLike
from .layers import to_numpy

if TYPE_CHECKING:
    from .backends.base import Backend
    from .compress import QuantizedModel
    from .models import Model

__all__ = ["load_model", "save_model"]

FORMAT = "cnnkern-sequential"
FUNCTIONAL_FORMAT = "cnnkern-functional"  # a functional Model: each layer entry also names its inbound layers
FORMAT_VERSION = 1


def save_model(model: Model, path: PathLike) -> None:
    """Architecture and weights to ONE .npz file at exactly ``path``, written atomically (a crash or a
    full disk leaves any previous file at ``path`` as it was)."""
    model.build()
    arrays = {key: to_numpy(d[k]) for key, _, d, k in model._weight_items()}
    arrays["__architecture__"] = np.array(json.dumps(model.get_config()))
    # numpy's stub types **kwds against savez's own allow_pickle keyword, hence the ignore
    atomic_save(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_model(path: PathLike, backend: str | Backend | None = None) -> Model | QuantizedModel:
    """A model saved by :meth:`Model.save` (a Sequential or a functional Model), built and (if it was)
    compiled, on ``backend`` (None: the current default). Its predictions are those of the saved model. A
    file saved by :meth:`cnnkern.compress.QuantizedModel.save` gives that int8 model back (``backend`` None:
    the fastest with int8 kernels here).

    The file is untrusted input: the architecture (layer classes, required and unknown keys, types and
    ranges, the sizes it implies) and each weight's dtype (the model's) and shape are checked before
    anything of the model's size is allocated; pickles are refused. Errors are ``ValueError`` naming the file
    and the layer (see :mod:`cnnkern._modelfile`)."""
    from . import _modelfile

    return _modelfile.load(path, backend)
