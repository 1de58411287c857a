"""The front door: one function per kernel (docs/design.md §2), each checking its arguments once, normalising
them (stride/padding/... to tuples, non-contiguous or misaligned arrays to contiguous copies, ndarray
subclasses to base-class views) and calling the chosen backend (``backend=`` a name or a Backend; None: the
current default). Inputs are never modified; only the optimizer updates and batch norm's running statistics
write in place. The rules (bounds, the memory estimate, empty batches) are in :mod:`cnnkern.ops.check`.

A kernel whose table entry names a ``recipe`` gets its front door generated (:mod:`cnnkern.ops.recipes`);
the others are written in ``ops/<stem>.py`` and imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .activation import activation_backward, activation_forward
from .augment import augment_affine_forward, augment_color_forward, augment_shift_forward
from .batchnorm import (
    batchnorm2d_act_forward,
    batchnorm2d_act_maxpool_backward,
    batchnorm2d_act_maxpool_forward,
    batchnorm2d_backward,
    batchnorm2d_forward,
)
from .conv import conv2d_backward, conv2d_bias_act_forward, conv2d_forward
from .conv_pool import conv2d_act_maxpool_backward, conv2d_act_maxpool_forward
from .dense import dense_backward, dense_bias_act_forward, dense_forward
from .loss import (
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    softmax_cross_entropy_soft_backward,
    softmax_cross_entropy_soft_forward,
)
from .optim import adam_update, adam_update_multi, rmsprop_update, sgd_update
from .pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_act_backward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from .recipes import GENERATED

if TYPE_CHECKING:
    from collections.abc import Callable

    # the front doors generated from the table (ops/recipes.py): untyped to the checker, by construction
    def __getattr__(name: str) -> Callable[..., Any]: ...


globals().update(GENERATED)
# the hand-written front doors above, then the generated ones (tests/test_kernel_table.py: the table's)
__all__ = [
    "activation_backward",
    "activation_forward",
    "adam_update",
    "adam_update_multi",
    "augment_affine_forward",
    "augment_color_forward",
    "augment_shift_forward",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "batchnorm2d_act_forward",
    "batchnorm2d_act_maxpool_backward",
    "batchnorm2d_act_maxpool_forward",
    "batchnorm2d_backward",
    "batchnorm2d_forward",
    "conv2d_act_maxpool_backward",
    "conv2d_act_maxpool_forward",
    "conv2d_backward",
    "conv2d_bias_act_forward",
    "conv2d_forward",
    "dense_backward",
    "dense_bias_act_forward",
    "dense_forward",
    "maxpool2d_act_backward",
    "maxpool2d_backward",
    "maxpool2d_forward",
    "rmsprop_update",
    "sgd_update",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_soft_backward",
    "softmax_cross_entropy_soft_forward",
]
__all__ += list(GENERATED)
