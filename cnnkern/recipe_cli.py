"""``cnnkern train --recipe NAME`` and ``cnnkern bench --recipe NAME`` (docs/recipes.md): the command-line
side of :mod:`cnnkern.recipes` and :mod:`cnnkern.bench.recipe`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import recipes

if TYPE_CHECKING:
    from .backends.base import Backend
    from .recipes import Recipe, Run


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """--recipe, --target and --steps, shared by `cnnkern train` and `cnnkern bench`."""
    p.add_argument(
        "--recipe",
        metavar="NAME|list",
        help="train a named recipe (model, augmentation, schedule, batch, epochs; docs/recipes.md) and "
        "print its time to accuracy; 'list' lists them",
    )
    p.add_argument(
        "--target",
        type=_fraction,
        default=None,
        metavar="ACC",
        help="with --recipe: stop when the held-out validation accuracy first reaches ACC (e.g. 0.93)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --recipe: at most N steps per epoch (a shorter run)",
    )


def add_augment_cost_argument(p: argparse.ArgumentParser) -> None:
    """`cnnkern bench --recipe NAME --augment-cost [STEPS]` (cnnkern.bench.augment_cost)."""
    p.add_argument(
        "--augment-cost",
        type=_positive_int,
        nargs="?",
        const=200,
        default=None,
        metavar="STEPS",
        help="with --recipe: instead of the comparison with PyTorch, the recipe's training images/s with its "
        "augmentation on against off (same weights, batches and threads; STEPS timed steps a side, "
        "default 200)",
    )


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a float, got {text!r}") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"an accuracy is a fraction in (0, 1], got {text}")
    return v


def _recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Recipe:
    try:
        base = recipes.get(args.recipe)
    except ValueError as exc:
        parser.error(f"--recipe: {exc}")
    return recipes.with_overrides(
        base,
        epochs=getattr(args, "epochs", None),
        batch_size=getattr(args, "batch_size", None),
        lr=getattr(args, "lr", None),
        steps_per_epoch=args.steps,
    )


def _data(args: argparse.Namespace, recipe: Recipe) -> tuple[list, str]:
    from .cli_common import _data_or_fail

    train, test, source = _data_or_fail(args.data)
    return recipes.prepare(recipe, train, test, args.seed), source


def _describe(recipe: Recipe, data: list, source: str, seed: int) -> None:
    print(
        f"data: {source}: {len(data[0])} train, {len(data[2])} held out for validation, {len(data[4])} test"
    )
    aug = recipes.augmentation_text(recipe)
    print(
        f"recipe {recipe.name}: model {recipe.model}, {recipe.epochs} epoch(s) of "
        f"{recipes.steps_per_epoch(recipe, len(data[0]))} steps, batch {recipe.batch_size}, "
        f"Adam lr {recipe.lr:g} "
        f"{recipe.schedule}, augmentation: {aug or 'none'}, seed {seed}"
    )


def _report(run: Run) -> None:
    if run.target is not None:
        if run.reached_s is not None:
            print(
                f"{run.framework}: reached val_accuracy {run.target:.4f} after {run.reached_s:.1f} s of "
                "training "
                f"(wall time {run.wall_s:.1f} s with validation and test passes)"
            )
        else:
            best = max((e[3] for e in run.evals), default=float("nan"))
            print(f"{run.framework}: did not reach val_accuracy {run.target:.4f} (best {best:.4f})")
    print(
        f"{run.framework}: test accuracy {run.test_accuracy:.4f}  test loss {run.test_loss:.4f}  "
        f"({len(run.steps)} steps in {run.steps[-1][0] if run.steps else 0.0:.1f} s of training, "
        f"wall time {run.wall_s:.1f} s)"
    )


def train_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser, backend: Backend) -> int:
    """``cnnkern train --recipe NAME``: train, print the validation curve as it goes, the time to --target,
    the test accuracy; --plot draws the curves."""
    recipe = _recipe(args, parser)
    data, source = _data(args, recipe)
    _describe(recipe, data, source, args.seed)
    print(f"backend: {backend.name}")
    progress = recipes.print_progress if args.verbose else None
    run = recipes.run_cnnkern(
        recipe, data, backend=backend, seed=args.seed, target=args.target, progress=progress
    )
    _report(run)
    if args.plot:
        from .recipe_plot import plot_run

        plot_run(run, args.plot)
        print(f"saved plot to {args.plot}")
    return 0


def bench_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``cnnkern bench --recipe NAME``: the recipe in cnnkern, then in PyTorch from the same initial weights;
    both validation curves, the time to the common accuracy and its ratio; --plot draws both curves."""
    from . import backends, torch_ref
    from .bench.recipe import curve_table, run_torch
    from .bench.runner import apply_threads, default_threads

    cost = args.augment_cost is not None
    if not cost and torch_ref.torch_version() is None:
        parser.error(
            '--recipe compares against PyTorch, which is not installed: pip install "cnnkern[torch]"'
        )
    names = [n for n in (args.backends or []) if n != "torch"]
    if len(names) > 1:
        parser.error(f"--recipe trains on one cnnkern backend; --backends names {', '.join(names)}")
    try:
        backend = backends.resolve(names[0] if names else None)
    except (backends.BackendUnavailableError, ValueError) as exc:
        parser.error(str(exc))
    recipe = _recipe(args, parser)
    if cost and not (recipe.flip or recipe.translate):
        parser.error(f"--augment-cost: recipe {recipe.name} has no augmentation to measure")
    threads = args.threads or default_threads()
    apply_threads(threads, [backend.name], not cost)
    data, source = _data(args, recipe)
    _describe(recipe, data, source, args.seed)
    if cost:
        from .bench import augment_cost

        measured = augment_cost.measure(recipe, data, backend, args.seed, args.augment_cost)
        print(augment_cost.report(measured, recipes.augmentation_text(recipe), backend.name, threads))
        return 0
    print(f"cnnkern backend: {backend.name}; {threads} thread(s) each")
    model = recipes.build(recipe, backend=backend, seed=args.seed)
    weights, rng_state = model.get_weights(), model.rng.bit_generator.state
    runs = [
        recipes.run_cnnkern(recipe, data, backend, args.seed, args.target, recipes.print_progress),
        run_torch(recipe, data, weights, args.seed, args.target, recipes.print_progress, rng_state),
    ]
    print(curve_table(runs))
    if args.plot:
        from .recipe_plot import plot_compare

        plot_compare(runs, args.plot)
        print(f"saved {args.plot}")
    return 0
