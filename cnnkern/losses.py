"""Loss objects for :meth:`cnnkern.models.Sequential.compile` (Keras's ``keras.losses``).

Loss: sparse categorical cross-entropy, always computed by the fused, numerically stable
``softmax_cross_entropy`` kernel on logits: a final ``softmax`` (Dense(..., activation='softmax') or an
Activation('softmax') layer) hands its pre-softmax values to the loss during training and evaluation, and
still outputs probabilities in ``predict``. With ``SparseCategoricalCrossentropy(from_logits=True)`` the
final layer must be linear and ``predict`` returns logits, as in Keras.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SparseCategoricalCrossentropy", "get"]


class SparseCategoricalCrossentropy:
    """Cross-entropy of integer labels. ``from_logits=False`` (the string
    'sparse_categorical_crossentropy'): the model ends in a softmax; True: it ends in a linear layer."""

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": "SparseCategoricalCrossentropy", "from_logits": self.from_logits}


def get(identifier: str | SparseCategoricalCrossentropy | dict[str, Any]) -> SparseCategoricalCrossentropy:
    """The loss object for ``compile(loss=...)``: a loss object, its name or its ``get_config()``."""
    if isinstance(identifier, SparseCategoricalCrossentropy):
        return identifier
    if identifier == "sparse_categorical_crossentropy":
        return SparseCategoricalCrossentropy()
    if isinstance(identifier, dict) and identifier.get("class_name") == "SparseCategoricalCrossentropy":
        return SparseCategoricalCrossentropy(identifier.get("from_logits", False))
    raise ValueError(
        f"loss must be 'sparse_categorical_crossentropy' or a SparseCategoricalCrossentropy, "
        f"got {identifier!r}"
    )
