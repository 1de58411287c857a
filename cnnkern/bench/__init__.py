"""``cnnkern bench``: the classic CNN's training step and inference, and each of its layers' kernels, on
every backend and on PyTorch, timed in one process, interleaved; a table (median, IQR, min-max, GFLOP/s,
GB/s, % of the FMA peak estimate, time ratio to PyTorch), optionally a JSON file of the raw samples and a
bar chart. ``--profile`` prints a per-kernel breakdown of the cpp training step and inference instead;
``--int8`` (:mod:`.int8`), ``--zoo`` (:mod:`.zoo`) and ``--model`` (saved model files, :mod:`.saved`) time
other models.

Modules: :mod:`.shapes` (named layer shapes and their FLOP/byte counts), :mod:`.workloads` and :mod:`.steps`
(the workloads), :mod:`.timing` (interleaved measurement), :mod:`.peak` (FMA peak estimate),
:mod:`.runner` (a whole run), :mod:`.profile` (the breakdown), :mod:`.report` (table, JSON, plot). Only
argument parsing lives here, so that ``cnnkern --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Settings

__all__ = ["add_bench", "run_bench"]

# the run length of --quick and of a full run
QUICK: dict[str, Any] = {"repeat": 5, "target_s": 0.005, "settle_s": 0.002, "profile_steps": 5}
FULL: dict[str, Any] = {"repeat": 15, "target_s": 0.02, "settle_s": 0.015, "profile_steps": 20}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_bench(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the training step, inference and every layer's kernels against PyTorch",
        description="Time the classic CNN's training step and inference, and each of its layers' kernels "
        "(plus two ResNet-like convolutions), on every available backend and on PyTorch when "
        "installed, in one process, interleaved. Each result is checked against the reference "
        "before it is timed. Ratios compare medians from this run only.",
    )
    p.add_argument(
        "--backends",
        type=_names,
        default=None,
        metavar="LIST",
        help="comma list of cpp, numba, cuda, reference, torch, or 'all' (default: every available "
        "backend but reference, the NumPy specification, plus torch when installed)",
    )
    p.add_argument(
        "--batch",
        type=_int_list,
        default=None,
        metavar="B[,B...]",
        help="batch sizes of the classic CNN (default 32,128; --quick: 32)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help=f"interleaved samples per candidate (default {FULL['repeat']}; --quick {QUICK['repeat']})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run: batch 32, fewer and shorter samples, the current SIMD path only, no "
        "ResNet-like convolutions",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads for every backend and for PyTorch (default: the usable cores)",
    )
    p.add_argument(
        "--simd",
        type=_names,
        default=None,
        metavar="LIST",
        help="the cpp SIMD paths to time, or 'all' (default all the CPU supports; --quick: the current one)",
    )
    p.add_argument(
        "--only",
        choices=("all", "steps", "kernels"),
        default="all",
        help="time the training step and inference, or the kernels, or both (default)",
    )
    p.add_argument(
        "--zoo",
        type=_names,
        nargs="?",
        const=["all"],
        default=None,
        metavar="LIST",
        help="instead of the classic CNN: the model zoo's training steps and inference against PyTorch twins "
        "(comma list of models, or all when given alone; batches default 1,32,128, batch 1 inference only; "
        "the models: benchmarks/NOTES.md)",
    )
    p.add_argument(
        "--int8",
        type=_names,
        nargs="?",
        const=["all"],
        default=None,
        metavar="LIST",
        help="instead: inference float32 vs int8 (cnnkern.compress.quantize) vs PyTorch's x86 int8 of the "
        "classic CNN and the VGG-style model with batch norm (comma list of classic, vgg_bn; both when given "
        "alone; batches default 1,128; --backends picks the cnnkern backend and whether torch runs)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="FILE",
        help="instead: inference (predict) of a saved model file, float or int8 (`cnnkern quantize`), on "
        "each --backends backend (default: every available one but reference); repeat it to time several "
        "files side by side, each row's time also as a ratio to the first (batches default 1,128)",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="save a bar chart (with --recipe: both time-to-accuracy curves on one chart; needs matplotlib)",
    )
    from ..recipe_cli import add_augment_cost_argument, add_recipe_arguments

    add_recipe_arguments(p)
    add_augment_cost_argument(p)
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR|bundled",
        help="with --recipe: the Fashion-MNIST directory, or 'bundled' (as for `cnnkern train`)",
    )
    p.add_argument("--epochs", type=int, default=None, help="with --recipe: override the recipe's epochs")
    p.add_argument(
        "--seed", type=int, default=0, help="with --recipe: seed of weights, split, order (default 0)"
    )
    p.add_argument("--json", metavar="PATH", help="save raw samples and metadata as JSON")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of the comparison: per-kernel breakdown of the cpp training step and inference",
    )
    p.set_defaults(run=run_bench)


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Validate the command line against this machine (exit 2 before any work if it cannot be honoured)."""
    from .. import backends, torch_ref
    from .runner import Settings, default_threads

    have_torch = torch_ref.torch_version() is not None
    if args.backends is None:
        names = [n for n in backends.available() if n != "reference"] + (["torch"] if have_torch else [])
    elif args.backends == ["all"]:
        names = backends.available() + (["torch"] if have_torch else [])
    else:
        names = args.backends
    for name in names:
        if name == "torch":
            if not have_torch:
                parser.error('torch is not installed: pip install "cnnkern[torch]"')
        elif name not in backends.NAMES:
            parser.error(
                f"--backends: unknown backend {name!r}; choose from {', '.join(backends.NAMES + ('torch',))}"
            )
        elif backends.probe(name) is not None:
            parser.error(f"backend {name!r} is unavailable: {backends.probe(name)}")
    if args.profile and "cpp" not in names:
        parser.error(
            "--profile breaks down the cpp training step, but the cpp backend is not selected or "
            f"unavailable ({backends.probe('cpp')})"
        )
    if args.profile and (args.plot or args.only != "all"):
        parser.error("--plot and --only apply to the comparison, not to --profile")
    if args.simd is not None and "cpp" not in names:
        parser.error("--simd selects the cpp backend's SIMD paths, but the cpp backend is not selected")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.threads is not None and "cpp" in names:
        too_many = backends.get("cpp").thread_count_error(args.threads)
        if too_many is not None:
            parser.error(f"--threads: {too_many}")
    zoo_names: list[str] = []
    if args.zoo is not None:
        from .zoo import ZOO

        zoo_names = list(ZOO) if args.zoo == ["all"] else args.zoo
        for name in zoo_names:
            if name not in ZOO:
                parser.error(f"--zoo: unknown model {name!r}; choose from {', '.join(ZOO)}")
        if not have_torch:
            parser.error('--zoo checks every model against its PyTorch twin: pip install "cnnkern[torch]"')
        if args.profile or args.only != "all":
            parser.error("--zoo times the zoo models only: it does not combine with --profile or --only")
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib, which is not installed: pip install "cnnkern[plot]"')
    simd: list[str] = []
    if "cpp" in names:
        cpp = backends.get("cpp")
        supported = cpp.supported_simd()
        if args.simd is None:
            simd = [cpp.simd()] if args.quick else supported
        elif args.simd == ["all"]:
            simd = supported
        else:
            simd = args.simd
            for path in simd:
                if path not in supported:
                    parser.error(f"--simd: this CPU cannot run {path!r}; it supports {', '.join(supported)}")
    mode = QUICK if args.quick else FULL
    return Settings(
        backends=[n for n in names if n != "torch"],
        torch="torch" in names,
        simd=simd,
        batches=args.batch or ([32] if args.quick else [1, 32, 128] if zoo_names else [32, 128]),
        repeat=args.repeat or mode["repeat"],
        target_s=mode["target_s"],
        settle_s=mode["settle_s"],
        threads=args.threads or default_threads(),
        resnet=not args.quick and not zoo_names,
        kernels=args.only in ("all", "kernels") and not zoo_names,
        steps=args.only in ("all", "steps") and not zoo_names,
        quick=args.quick,
        zoo=zoo_names,
    )


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Entry point of ``cnnkern bench`` (see :func:`add_bench`). Exit status 1 if a result was wrong."""
    if args.recipe is not None:
        return _bench_recipe(args, parser)
    if args.model is not None:
        from .saved import bench_models

        return bench_models(args, parser)
    if args.int8 is not None:
        return _bench_int8(args, parser)
    if (
        args.target is not None
        or args.steps is not None
        or args.data
        or args.epochs is not None
        or args.augment_cost is not None
    ):
        parser.error("--target, --steps, --data, --epochs and --augment-cost apply to --recipe runs")
    settings = _settings(args, parser)
    from . import report, runner

    options = {k: v for k, v in vars(args).items() if k not in ("run", "command_parsers")}
    if args.profile:
        from .. import backends
        from .profile import profile_step

        runner.apply_threads(settings.threads, settings.backends, settings.torch)
        cpp = backends.get("cpp")
        default = cpp.simd()
        steps = QUICK["profile_steps"] if args.quick else FULL["profile_steps"]
        profiles: list[dict[str, Any]] = []
        try:
            for path in settings.simd if args.simd else [default]:
                cpp.set_simd(path)
                for inference in (False, True):
                    for b in settings.batches:
                        what = "inference" if inference else "training step"
                        print(
                            f"profiling the cpp ({path}) {what} at batch {b} ({steps} steps)...",
                            file=sys.stderr,
                            flush=True,
                        )
                        prof = profile_step(cpp, b, steps=steps, seed=settings.seed, inference=inference)
                        profiles.append(prof)
                        print(report.profile_table(prof) + "\n")
        finally:
            cpp.set_simd(default)
        if args.json:
            report.write_json(
                {
                    "meta": {
                        "options": options,
                        "threads": settings.threads,
                        "machine": runner.machine(),
                        "versions": runner.versions(settings),
                    },
                    "profile": profiles,
                },
                args.json,
            )
            print(f"saved {args.json}")
        return 0
    data = runner.run(settings, options=options)
    print(report.table(data))
    if args.json:
        report.write_json(data, args.json)
        print(f"saved {args.json}")
    if args.plot:
        report.plot(data, args.plot)
        print(f"saved {args.plot}")
    failed = [
        (r["label"], n, c["status"])
        for r in data["results"]
        for n, c in r["candidates"].items()
        if c["status"] != "ok"
    ]
    if failed:
        print(
            f"{len(failed)} candidate(s) not timed because their result was wrong or they failed:",
            file=sys.stderr,
        )
        for label, name, status in failed:
            print(f"  {label}: {name}: {status}", file=sys.stderr)
        return 1
    return 0


def _bench_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.recipe == "list":
        from ..recipes import listing

        print(listing())
        return 0
    others = {
        "--zoo": args.zoo,
        "--int8": args.int8,
        "--model": args.model,
        "--profile": args.profile,
        "--json": args.json,
        "--batch": args.batch,
    }
    given = [k for k, v in others.items() if v]
    if given or args.only != "all" or args.simd or args.quick or args.repeat:
        parser.error(
            "--recipe times a training run: it does not combine with --zoo, --int8, --model, --profile, "
            "--json, --batch, --only, --simd, --quick or --repeat"
        )
    if args.augment_cost is not None and (args.target is not None or args.plot or args.epochs is not None):
        parser.error(
            "--augment-cost times training steps: it does not combine with --target, --plot or --epochs"
        )
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib, which is not installed: pip install "cnnkern[plot]"')
    from ..recipe_cli import bench_recipe

    return bench_recipe(args, parser)


def _bench_int8(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``cnnkern bench --int8``: see :mod:`.int8`."""
    from .. import backends, torch_ref
    from .int8 import MODELS

    others = {"--zoo": args.zoo, "--profile": args.profile, "--plot": args.plot, "--simd": args.simd}
    given = [k for k, v in others.items() if v] + (["--only"] if args.only != "all" else [])
    if given:
        parser.error(f"--int8 times int8 inference only: it does not combine with {', '.join(given)}")
    names = list(MODELS) if args.int8 == ["all"] else args.int8
    for name in names:
        if name not in MODELS:
            parser.error(f"--int8: unknown model {name!r}; choose from {', '.join(MODELS)}")
    torch_reason = (
        None
        if torch_ref.torch_version() is not None
        else 'torch is not installed: pip install "cnnkern[torch]"'
    )
    chosen = args.backends or [n for n in ("cpp", "numba", "reference") if backends.probe(n) is None][:1] + [
        "torch"
    ]
    ours = [n for n in chosen if n != "torch"]
    if len(ours) != 1 or ours[0] not in ("cpp", "numba", "reference"):
        parser.error(
            f"--int8: --backends names one of cpp, numba, reference (plus torch), got {','.join(chosen)}"
        )
    if backends.probe(ours[0]) is not None:
        parser.error(f"backend {ours[0]!r} is unavailable: {backends.probe(ours[0])}")
    if "torch" in chosen and torch_reason is not None and args.backends is not None:
        parser.error(torch_reason)
    if "torch" not in chosen:
        torch_reason = torch_reason or "not in --backends"
    for flag, value in (("--threads", args.threads), ("--repeat", args.repeat)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    from . import report, runner
    from .int8 import run_int8, table

    threads = args.threads or runner.default_threads()
    with_torch = torch_reason is None
    runner.apply_threads(threads, ours, with_torch)
    mode = QUICK if args.quick else FULL
    info = f"cnnkern backend {ours[0]}, {threads} thread(s)"
    if ours[0] == "cpp":
        from .. import _cpp

        gemm = getattr(_cpp, "q8_gemm_path", None)  # the int8 GEMM's instruction set, where reported
        info += f", SIMD path {_cpp.simd()}" + (f", int8 GEMM {gemm()}" if gemm else "")
    print(f"int8 inference: {info}; medians of {args.repeat or mode['repeat']} interleaved samples")
    records = run_int8(
        names,
        args.batch or [1, 128],
        backend=ours[0],
        with_torch=with_torch,
        repeat=args.repeat or mode["repeat"],
        target_s=mode["target_s"],
        settle_s=mode["settle_s"],
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(table(records, torch_reason))
    if args.json:
        meta = {"threads": threads, "backend": ours[0], "info": info, "machine": runner.machine()}
        report.write_json({"meta": meta, "int8": records}, args.json)
        print(f"saved {args.json}")
    return 0
