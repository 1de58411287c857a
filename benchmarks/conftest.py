"""pytest-benchmark set-up for ``pytest benchmarks/``.

Collection: the files are ``bench_*.py`` and :func:`pytest_collect_file` collects them here only, so the main
``pytest`` run (``testpaths = ["tests"]``) never sees them.

Peers: every test taking the ``peer`` fixture runs once per cnnkern backend in the registry (the cpp backend
once per SIMD path) and once for PyTorch (NCHW; also channels_last in a module that sets
``TORCH_FORMATS``). A backend, SIMD path or PyTorch that cannot run here skips with the reason. All of them
get the same thread count (``--bench-threads``, default 2) and share one benchmark group per workload, so
pytest-benchmark's table compares them directly.

The workloads (shapes, inputs, FLOP and byte counts, the check) are :mod:`cnnkern.bench`'s, shared with
``cnnkern bench``. Each test checks its peer's first result against the float64 reference before timing
(this is also the warm-up that triggers Numba's compilation), then times, then writes GFLOP/s and GB/s from
the median into ``extra_info``. pytest-benchmark times one test after another; for interleaved
measurements, which share the machine's noise alike, use ``cnnkern bench``.
"""

import pytest

from cnnkern import backends
from cnnkern.bench import runner

SIMD_PATHS = ("scalar", "avx2", "avx512")


def pytest_addoption(parser):
    parser.addoption(
        "--bench-threads",
        type=int,
        default=2,
        help="threads for the cpp and numba backends and for PyTorch (default 2)",
    )


def pytest_collect_file(file_path, parent):
    # a file named on the command line is collected by pytest itself, whatever its name
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _peer_params(torch_formats):
    params = []
    for name in backends.NAMES:
        if name == "cpp":
            params += [pytest.param(("cpp", path), id=f"cpp-{path}") for path in SIMD_PATHS]
        else:
            params.append(pytest.param((name, None), id=name))
    ids = {"nchw": "torch", "channels_last": "torch-cl"}
    params += [pytest.param(("torch", fmt), id=ids[fmt]) for fmt in torch_formats]
    return params


def pytest_generate_tests(metafunc):
    if "peer" in metafunc.fixturenames:
        formats = getattr(metafunc.module, "TORCH_FORMATS", ("nchw",))
        metafunc.parametrize("peer", _peer_params(formats), indirect=True)


@pytest.fixture(scope="session")
def threads(request):
    n = request.config.getoption("--bench-threads")
    if n < 1:
        raise pytest.UsageError(f"--bench-threads must be >= 1, got {n}")
    return n


class Peer:
    """A backend (or PyTorch in one memory format) ready to bind workloads."""

    def __init__(self, name, backend=None, torch_format=None):
        self.name = name
        self.backend = backend
        self.torch_format = torch_format

    def bind(self, workload):
        if self.backend is None:
            return workload.bind_torch(self.torch_format)
        return workload.bind(self.backend)


@pytest.fixture
def peer(request, threads):
    name, variant = request.param
    if name == "torch":
        from cnnkern import torch_ref

        if torch_ref.torch_version() is None:
            pytest.skip('PyTorch is not installed: pip install "cnnkern[torch]"')
        runner.apply_threads(threads, (), True)
        yield Peer("torch" if variant == "nchw" else "torch-cl", torch_format=variant)
        return
    reason = backends.probe(name)
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    be = backends.get(name)
    runner.apply_threads(threads, (name,), False)
    if name != "cpp":
        yield Peer(name, be)
        return
    if variant not in be.supported_simd():
        pytest.skip(
            f"this CPU cannot run the cpp {variant} path (it supports {', '.join(be.supported_simd())})"
        )
    before = be.simd()
    be.set_simd(variant)
    try:
        yield Peer(f"cpp-{variant}", be)
    finally:
        be.set_simd(before)


@pytest.fixture
def measure(peer, benchmark):
    """``measure(workload)``: check ``peer``'s first result, warm up, time, report the rates."""

    def run(workload):
        fn = peer.bind(workload)
        problem = workload.verify(fn)
        assert problem is None, (
            f"{peer.name} gives a wrong result on {workload.kernel} {workload.label}: {problem}"
        )
        fn()
        benchmark.group = f"{workload.kernel}: {workload.label}"
        benchmark.extra_info.update(
            peer=peer.name,
            kernel=workload.kernel,
            shape=workload.label,
            flops=workload.flops,
            bytes=workload.bytes,
        )
        benchmark(fn)
        stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
        if stats is not None:
            median = stats.stats.median
            if workload.flops:
                benchmark.extra_info["gflops"] = workload.flops / median / 1e9
            if workload.bytes:
                benchmark.extra_info["gbs"] = workload.bytes / median / 1e9

    return run
