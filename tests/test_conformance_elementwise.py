"""Every kernel of the table with the ``elementwise`` recipe (cnnkern/kernels/), on every backend (each
SIMD path of cpp, and the CUDA emulator through tests/test_cuda.py) against the float64 reference.

Table-driven: a new elementwise kernel is tested here without an edit. Each positional array is random
(scale 4), the 'specials' cases planting NaN, ±inf, ±1e30, ±88/89, ±1e4 and tiny values in each (at the
same places); the shapes cross the SIMD widths (1, 7, 8, 9, 33 elements and 4-D). Each keyword setting
takes its front-door default, plus the values listed in SETTINGS.
"""

import numpy as np
import pytest

from cnnkern import ops
from cnnkern.kernels import TABLE

from .cases import ACTIVATION_CASES, randn
from .compare import assert_close, elementwise_tol

ELEMENTWISE = [kernel for kernel in TABLE.values() if kernel.recipe == "elementwise"]
# kernel -> more keyword settings to test than the front-door defaults
SETTINGS: dict[str, list[dict[str, float]]] = {
    "elu_forward": [{"alpha": 0.5}],
    "elu_backward": [{"alpha": 0.5}],
}
CALLS = [
    pytest.param(kernel, kw, id=f"{kernel.name}{''.join(f'-{k}{v}' for k, v in kw.items())}")
    for kernel in ELEMENTWISE
    for kw in [{}] + SETTINGS.get(kernel.name, [])
]


def _arrays(kernel, case):
    out = []
    for i in range(sum(arg.positional for arg in kernel.args)):
        x = randn(case.shape, 10 + i, scale=4.0).reshape(-1)
        x[: len(case.specials)] = case.specials
        out.append(x.astype(np.float32).astype(np.float64).reshape(case.shape))
    return out


@pytest.mark.parametrize("kernel,kw", CALLS)
@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=lambda c: c.id)
def test_elementwise(target, case, kernel, kw):
    arrays = _arrays(kernel, case)
    want = getattr(ops, kernel.name)(*arrays, **kw, backend="reference")
    for dt in target.dtypes:
        got = target.call(kernel.name, *[target.put(a, dt) for a in arrays], **kw)
        what = f"{target.id} {dt} {kernel.name} {kw}"
        assert_close(target.get(got), want, **elementwise_tol(dt), what=what, dtype=dt)
