"""``cnnkern bench --recipe NAME --augment-cost``: what a recipe's augmentation costs its training throughput.

Issue 16 asks that the 93% recipe's training images/s drop by at most 5% with augmentation on against off
(same model, batch and threads). Two models are built from the same weights, one with the recipe's
augmentation layers in front and one without, and trained on the same batches in alternating blocks of
steps, so that a machine whose speed drifts shifts both sides alike; each side's images/s is its batch size
over its median step (gathering the batch, augmentation, forward, backward, update: what the recipe's clock
counts, docs/recipes.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import recipes

BLOCK = 10  # steps per side before switching; the first block of each side is warm-up and not counted


@dataclass
class AugmentCost:
    recipe: str
    batch_size: int
    step_s: dict[str, list[float]] = field(default_factory=lambda: {"on": [], "off": []})

    def images_per_s(self, side: str) -> float:
        return self.batch_size / float(np.median(self.step_s[side]))

    @property
    def ratio(self) -> float:
        """images/s with augmentation on over off (1.0: free; 0.95: the issue's limit)."""
        return self.images_per_s("on") / self.images_per_s("off")


def measure(
    recipe: recipes.Recipe, data: Sequence[np.ndarray], backend: Any, seed: int, steps: int
) -> AugmentCost:
    """Time ``steps`` counted training steps on each side (plus one warm-up block each)."""
    if not (recipe.flip or recipe.translate):
        raise ValueError(f"recipe {recipe.name!r} has no augmentation to measure")
    on = recipes.build(recipe, backend=backend, seed=seed, augment=True)
    off = recipes.build(recipe, backend=backend, seed=seed, augment=False)
    off.set_weights(on.get_weights())
    trainers = {
        "on": recipes.CnnkernTrainer(recipe, on, data, seed),
        "off": recipes.CnnkernTrainer(recipe, off, data, seed),
    }
    n_train, bs = len(data[0]), recipe.batch_size
    per_epoch = recipes.steps_per_epoch(recipe, n_train)
    result = AugmentCost(recipe.name, min(bs, n_train))  # the images in a full batch
    orders: dict[int, np.ndarray] = {}
    block = 0
    while min(len(t) for t in result.step_s.values()) < steps:
        for side, trainer in trainers.items():
            for k in range(BLOCK):
                step = block * BLOCK + k  # both sides train on the same batches in the same order
                epoch, s = divmod(step, per_epoch)
                if epoch not in orders:
                    orders[epoch] = recipes.epoch_order(n_train, seed, epoch)
                idx = orders[epoch][s * bs : (s + 1) * bs]
                t0 = time.perf_counter()
                trainer.step(idx, recipe.lr)  # the peak rate throughout: the time does not depend on it
                full = len(idx) == result.batch_size  # an epoch's short last batch: trained, not timed
                if block > 0 and full and len(result.step_s[side]) < steps:
                    result.step_s[side].append(time.perf_counter() - t0)
        block += 1
    return result


def report(cost: AugmentCost, augmentation: str, backend: str, threads: int) -> str:
    lines = [
        f"augmentation cost of recipe {cost.recipe} ({augmentation}), batch {cost.batch_size}, {backend}, "
        f"{threads} thread(s): {len(cost.step_s['on'])} steps a side, alternating blocks of {BLOCK}",
    ]
    for side in ("on", "off"):
        median_ms = float(np.median(cost.step_s[side])) * 1e3
        rate = cost.images_per_s(side)
        lines.append(f"  augmentation {side:<3}  median step {median_ms:8.2f} ms  {rate:9.0f} images/s")
    lines.append(
        f"  images/s on / off: {cost.ratio:.3f} ({100 * (cost.ratio - 1):+.1f}% with the augmentation)"
    )
    return "\n".join(lines)
