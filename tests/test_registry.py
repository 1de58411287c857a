"""The backend registry: probes and their reasons, the selection order (argument > set_backend >
CNNKERN_BACKEND > auto), no silent fallback, and `import cnnkern` staying light."""

import subprocess
import sys

import numpy as np
import pytest

import cnnkern
from cnnkern import BackendUnavailableError, backends, ops
from cnnkern.backends.base import KERNELS, Backend
from cnnkern.backends.reference import ReferenceBackend

from .conftest import required_backends, subprocess_env


def _python(code, **env):
    """Run code in a fresh interpreter (CNNKERN_BACKEND cleared, then env applied); return stripped stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(**env))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


class Tagged(ReferenceBackend):
    """The reference under another name, counting its calls: tells which backend a call reached."""

    name = "tagged"

    def __init__(self):
        self.calls = 0

    def activation_forward(self, x, kind, *, alpha):
        self.calls += 1
        return super().activation_forward(x, kind, alpha=alpha)


@pytest.fixture
def clean_selection(monkeypatch, restore_default_backend):
    monkeypatch.delenv("CNNKERN_BACKEND", raising=False)
    backends.set_backend(None)
    return monkeypatch


@pytest.mark.parametrize("name", backends.NAMES)
def test_probe_returns_none_or_a_one_line_reason(name):
    reason = backends.probe(name)
    assert reason is None or (isinstance(reason, str) and reason.strip() and "\n" not in reason), repr(reason)
    assert (name in backends.available()) == (reason is None)


@pytest.mark.parametrize("name", backends.NAMES)
def test_unavailable_backend_raises_with_the_probe_reason(name):
    reason = backends.probe(name)
    if reason is None:
        be = backends.get(name)
        assert isinstance(be, Backend) and be.name == name
        assert all(callable(getattr(be, k)) for k in KERNELS)
        return
    with pytest.raises(BackendUnavailableError) as info:
        backends.get(name)
    assert reason in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("name", required_backends() or ["reference"])
def test_required_backends_are_available(name):
    """CNNKERN_TEST_REQUIRE (CI: reference,cpp,numba) names backends that must load here."""
    reason = backends.probe(name)
    assert reason is None, f"backend {name!r} is required by CNNKERN_TEST_REQUIRE but unavailable: {reason}"


def test_unknown_names_are_refused(clean_selection):
    for bad in ("cudnn", "", None):
        with pytest.raises(ValueError, match="backend must be one of"):
            backends.get(bad)
    with pytest.raises(ValueError, match="backend must be one of"):
        cnnkern.set_backend("fast")
    clean_selection.setenv("CNNKERN_BACKEND", "fast")
    with pytest.raises(ValueError, match="CNNKERN_BACKEND"):
        backends.current()


def test_auto_picks_the_first_usable_in_order(clean_selection):
    want = next(n for n in backends.AUTO_ORDER if backends.probe(n) is None)
    assert backends.current().name == want
    assert backends.get("auto").name == want
    assert backends.AUTO_ORDER == ("cuda", "cpp", "numba", "reference")


def test_environment_beats_auto(clean_selection):
    clean_selection.setenv("CNNKERN_BACKEND", "reference")
    assert backends.current().name == "reference"


def test_set_backend_beats_environment_and_argument_beats_both(clean_selection):
    clean_selection.setenv("CNNKERN_BACKEND", "reference")
    tagged = Tagged()
    cnnkern.set_backend(tagged)
    assert backends.current() is tagged
    x = np.ones((2, 3), np.float32)
    ops.activation_forward(x, "relu")
    assert tagged.calls == 1, "set_backend() must win over CNNKERN_BACKEND"
    ops.activation_forward(x, "relu", backend="reference")
    assert tagged.calls == 1, "backend= must win over set_backend()"
    other = Tagged()
    ops.activation_forward(x, "relu", backend=other)
    assert (tagged.calls, other.calls) == (1, 1)
    cnnkern.set_backend(None)
    assert backends.current().name == "reference", "set_backend(None) goes back to the environment"


def test_selection_by_environment_in_a_fresh_process():
    out = _python("import cnnkern; print(cnnkern.get_backend().name)", CNNKERN_BACKEND="reference")
    assert out == "reference"


def test_no_silent_fallback(clean_selection):
    """A requested backend that cannot load is an error, never a quiet detour to another backend."""
    clean_selection.setitem(backends._probes, "numba", "numba disabled for this test")
    x = np.ones((2, 3), np.float32)
    with pytest.raises(BackendUnavailableError, match="numba disabled for this test"):
        ops.activation_forward(x, "relu", backend="numba")
    with pytest.raises(BackendUnavailableError, match="numba disabled for this test"):
        cnnkern.set_backend("numba")
    clean_selection.setenv("CNNKERN_BACKEND", "numba")
    with pytest.raises(BackendUnavailableError, match="numba disabled for this test"):
        ops.activation_forward(x, "relu")


def test_a_missing_kernel_is_an_error_naming_backend_and_kernel():
    class Partial(Backend):
        name = "partial"

    with pytest.raises(NotImplementedError, match="'partial'.*conv2d_forward"):
        ops.conv2d_forward(
            np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32), backend=Partial()
        )


def test_import_is_light():
    """`import cnnkern` (and using the reference) loads neither numba, cupy, torch nor the compiled
    extension."""
    heavy = ("numba", "cupy", "torch", "cnnkern._cpp", "cnnkern.backends.numba", "cnnkern.backends.cuda")
    code = (
        "import sys, numpy as np, cnnkern\n"
        f"heavy = {heavy!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "cnnkern.ops.activation_forward(np.ones(3), 'relu', backend='reference')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert _python(code).splitlines() == ["[]", "[]"]


def test_show_config_lists_every_backend():
    from cnnkern.info import config_text

    text = config_text()
    for name in backends.NAMES:
        reason = backends.probe(name)
        assert name in text
        if reason is not None:
            assert reason in text
