"""Training recipes (cnnkern.recipes, ``cnnkern train/bench --recipe``): the list, the held-out split, the
schedule, --target stopping, the PyTorch side's augmentation and start against cnnkern's, the plots. Tiny runs
on the bundled subset: the 'smoke' recipe, a few steps."""

import math

import numpy as np
import pytest

from cnnkern import ops, recipes
from cnnkern.datasets import fashion_mnist

from .test_cli import run


@pytest.fixture(scope="module")
def data():
    ((x, y), (xt, yt)), _ = fashion_mnist.load(subset=True)
    return recipes.prepare(recipes.get("smoke"), (x, y), (xt, yt), seed=0)


def _matplotlib():
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install 'cnnkern[plot]'")


@pytest.mark.parametrize("command", ["train", "bench"])
def test_recipe_list(command, capsys):
    status, out, _ = run([command, "--recipe", "list"], capsys)
    assert status == 0
    names = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert names == list(recipes.RECIPES)


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_builds_its_model(name):
    recipe = recipes.get(name)
    model = recipes.build(recipe, backend="reference", seed=0)
    assert model.layers[-1].output_shape == (10,)
    n_aug = len(recipes.augment_layers(recipe))
    assert n_aug == int(recipe.flip) + int(recipe.translate > 0)
    assert len(model.layers) == n_aug + len(recipes.model_layers(recipe.model))


def test_unknown_recipe_model_names_the_choices():
    with pytest.raises(ValueError, match="'vgg28', 'bn2', 'bn64' nor a 28x28x1 zoo model"):
        recipes.model_layers("resnet50")


def test_unknown_recipe_exits_2(capsys):
    status, _, err = run(["train", "--recipe", "fastest", "--data", "bundled"], capsys)
    assert status == 2 and "unknown recipe 'fastest'" in err
    status, _, err = run(["train", "--target", "0.9"], capsys)
    assert status == 2 and "apply to --recipe" in err
    status, _, err = run(["train", "--recipe", "smoke", "--target", "93"], capsys)
    assert status == 2 and "fraction in (0, 1]" in err


def test_validation_split_is_disjoint_and_seeded():
    tr, va = recipes.split_indices(9000, 5000, seed=3)
    assert len(va) == 900  # at most a tenth
    assert not set(tr) & set(va) and sorted(set(tr) | set(va)) == list(range(9000))
    tr2, va2 = recipes.split_indices(9000, 5000, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, recipes.split_indices(9000, 5000, seed=4)[1])


def test_trained_rows_never_include_validation_rows():
    """What the loop gathers (epoch_order over the prepared training rows) maps back to rows outside the
    validation split, for every epoch."""
    (x, y), _ = fashion_mnist.load(subset=True)[0]
    recipe = recipes.get("smoke")
    tr, va = recipes.split_indices(len(x), recipe.val_size, seed=0)
    prepared = recipes.prepare(recipe, (x, y), (x[:1], y[:1]), seed=0)
    assert np.array_equal(prepared[2], recipes.images(x[va])) and len(prepared[0]) == len(tr)
    for epoch in range(3):
        order = recipes.epoch_order(len(tr), 0, epoch)
        assert sorted(order) == list(range(len(tr)))
        assert not set(tr[order]) & set(va)


def test_warmup_cosine_schedule():
    base, total, warm = 0.01, 100, 10
    lr = recipes.warmup_cosine(base, total, warm)
    assert [lr(s) for s in range(warm)] == pytest.approx([base * (s + 1) / warm for s in range(warm)])
    for s in range(warm, total):  # PyTorch's CosineAnnealingLR over the steps after the warm-up
        assert lr(s) == pytest.approx(0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    assert lr(total - 1) > 0
    recipe = recipes.with_overrides(recipes.get("classic"), epochs=3)
    assert {recipes.schedule_for(recipe, 7)(s) for s in range(21)} == {recipe.lr}


def test_target_stops_at_the_first_validation_that_reaches_it(data):
    recipe = recipes.get("smoke")
    full = recipes.run_cnnkern(recipe, data, backend="cpp", seed=0, target=None)
    assert len(full.steps) == recipe.steps_per_epoch and len(full.evals) == 3
    accs = [e[3] for e in full.evals]
    target = accs[1]  # reached at the second validation at the latest
    first = next(i for i, a in enumerate(accs) if a >= target)
    run = recipes.run_cnnkern(recipe, data, backend="cpp", seed=0, target=target)
    assert len(run.evals) == first + 1 and len(run.steps) == recipe.eval_every * (first + 1)
    assert run.reached_s == run.evals[-1][0] and 0.0 < run.test_accuracy <= 1.0
    never = recipes.run_cnnkern(recipe, data, backend="cpp", seed=0, target=1.0)
    assert never.reached_s is None and len(never.steps) == recipe.steps_per_epoch


def test_train_recipe_command_prints_time_to_target(tmp_path, capsys):
    _matplotlib()
    png = tmp_path / "run.png"
    argv = ["train", "--recipe", "smoke", "--data", "bundled", "--steps", "4", "--target", "0.01"]
    status, out, err = run(argv + ["--plot", str(png)], capsys)
    assert status == 0, err
    assert "cnnkern: reached val_accuracy 0.0100 after" in out and "test accuracy" in out
    assert "epoch 1/1 step 4/4" in err  # progress
    assert png.stat().st_size > 0 and png.read_bytes()[:4] == b"\x89PNG"


def _shift_params(rng, n, h, w):
    flip = rng.integers(0, 2, (n, 2))
    offset = rng.integers(-max(h, w) - 2, max(h, w) + 3, (n, 2))
    offset[: n // 2] = rng.integers(-3, 4, (n - n // 2, 2))  # small shifts, the common case
    return flip, offset


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_torch_shift_equals_augment_shift_forward(backend):
    torch = pytest.importorskip("torch", reason='PyTorch side of the recipes: pip install "cnnkern[torch]"')
    from cnnkern.bench.recipe import torch_shift

    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 2, 7, 9)).astype(np.float32)
    flip, offset = _shift_params(rng, 16, 7, 9)
    want = ops.augment_shift_forward(x, flip, offset, np.zeros((16, 4), np.int64), backend=backend)
    got = torch_shift(torch.from_numpy(x), flip, offset).numpy()
    np.testing.assert_array_equal(got, want)


def test_torch_augmentation_draws_what_the_layers_draw(data):
    """The recipe's fused RandomFlip > RandomTranslation layers and torch_shift over draw_shift, from the same
    generator state, give the same images."""
    torch = pytest.importorskip("torch", reason='PyTorch side of the recipes: pip install "cnnkern[torch]"')
    from cnnkern.bench.recipe import torch_shift

    recipe = recipes.get("smoke")
    model = recipes.build(recipe, backend="cpp", seed=1)
    state = model.rng.bit_generator.state
    X = model._to_internal(data[0][:64])
    got = model.layers[0].forward(X, training=True)
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    flip, offset = recipes.draw_shift(rng, 64, 28, 28, recipe)
    assert flip[:, 0].any() and offset.any() and not flip[:, 1].any()
    np.testing.assert_array_equal(torch_shift(torch.from_numpy(np.asarray(X)), flip, offset).numpy(), got)


def test_pytorch_recipe_trains_the_same_problem(data):
    """Same start, batches, augmentation and schedule: the losses agree step for step in float32 at first."""
    pytest.importorskip("torch", reason='PyTorch side of the recipes: pip install "cnnkern[torch]"')
    from cnnkern.bench.recipe import run_torch, time_to_accuracy

    recipe = recipes.with_overrides(recipes.get("smoke"), steps_per_epoch=4)
    model = recipes.build(recipe, backend="cpp", seed=0)
    ours = recipes.run_cnnkern(recipe, data, backend="cpp", seed=0)
    theirs = run_torch(recipe, data, model.get_weights(), 0, None, None, model.rng.bit_generator.state)
    assert len(theirs.steps) == 4 and len(theirs.evals) == 1
    np.testing.assert_allclose([s[1] for s in theirs.steps], [s[1] for s in ours.steps], rtol=2e-4)
    assert theirs.test_accuracy == pytest.approx(ours.test_accuracy, abs=0.01)
    assert "cnnkern / pytorch = " in time_to_accuracy([ours, theirs])


def test_bench_recipe_command_and_plot(tmp_path, capsys):
    _matplotlib()
    pytest.importorskip("torch", reason='PyTorch side of the recipes: pip install "cnnkern[torch]"')
    png = tmp_path / "tta.png"
    argv = ["bench", "--recipe", "smoke", "--data", "bundled", "--steps", "4", "--threads", "1"]
    status, out, err = run(argv + ["--plot", str(png)], capsys)
    assert status == 0, err
    assert "pytorch: validation accuracy against training time" in out and "cnnkern / pytorch" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    status, _, err = run(["bench", "--recipe", "smoke", "--zoo"], capsys)
    assert status == 2 and "does not combine" in err


def test_augment_cost_times_both_sides_on_the_same_batches(data, capsys):
    from cnnkern.bench import augment_cost

    recipe = recipes.get("smoke")
    cost = augment_cost.measure(recipe, data, "cpp", seed=0, steps=13)
    assert len(cost.step_s["on"]) == len(cost.step_s["off"]) == 13  # a warm-up block, then two blocks
    assert all(t > 0 for side in cost.step_s.values() for t in side)
    assert cost.ratio == pytest.approx(cost.images_per_s("on") / cost.images_per_s("off"))
    # 45 images in batches of 32: every epoch ends with a short batch, trained on but never timed
    short = [data[0][:45], data[1][:45], *data[2:]]
    cost = augment_cost.measure(recipes.with_overrides(recipe, steps_per_epoch=None), short, "cpp", 0, 5)
    assert len(cost.step_s["on"]) == len(cost.step_s["off"]) == 5 and cost.batch_size == 32
    status, out, err = run(
        ["bench", "--recipe", "smoke", "--augment-cost", "5", "--data", "bundled", "--threads", "1"], capsys
    )
    assert status == 0, err
    assert "augmentation cost of recipe smoke (flip, shift 0.1), batch 32" in out
    assert "augmentation on " in out and "augmentation off" in out and "images/s on / off: " in out
    for argv, message in (
        (["--recipe", "classic", "--augment-cost", "5"], "has no augmentation to measure"),
        (["--recipe", "smoke", "--augment-cost", "5", "--target", "0.9"], "does not combine"),
        (["--augment-cost", "5"], "apply to --recipe runs"),
        (["--recipe", "smoke", "--augment-cost", "0"], "must be > 0"),
    ):
        status, _, err = run(["bench", *argv, "--data", "bundled"], capsys)
        assert status == 2 and message in err, (argv, err)


def test_plots_are_written(tmp_path, data):
    _matplotlib()
    from cnnkern.recipe_plot import plot_compare, plot_run

    recipe = recipes.with_overrides(recipes.get("smoke"), steps_per_epoch=4)
    r = recipes.run_cnnkern(recipe, data, backend="cpp", seed=0, target=0.5)
    plot_run(r, tmp_path / "one.svg")
    plot_compare([r, r], tmp_path / "two.png")
    assert (tmp_path / "one.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG"
