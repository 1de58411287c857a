"""Build the Fashion-MNIST subset bundled in cnnkern/datasets/data/ from the full IDX files.

Stratified: the same number of images of every class, drawn without replacement by a seeded
numpy.random.Generator from the train and from the test split, kept in their original order. The output is
byte-for-byte reproducible (gzip level 9 without a timestamp). Usage:

    python scripts/make_subset.py [--source /usr/share/datasets/fashion-mnist] [--train-per-class 900]
                                  [--test-per-class 200] [--seed 0] [--out cnnkern/datasets/data]
"""

import argparse
from pathlib import Path

import numpy as np

from cnnkern.datasets import idx, loader

FILES = dict(loader.FILES)


def stratified(labels, per_class, rng):
    """Sorted indices of ``per_class`` labels of each class, drawn without replacement."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size < per_class:
            raise SystemExit(f"class {c} has {members.size} examples, fewer than --per-class {per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "cnnkern" / "datasets" / "data")
    )
    p.add_argument("--train-per-class", type=int, default=900)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    (x_train, y_train), (x_test, y_test) = loader.load_directory(args.source)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, x, y, n in (
        ("train", x_train, y_train, args.train_per_class),
        ("test", x_test, y_test, args.test_per_class),
    ):
        keep = stratified(y, n, rng)
        for key, a in (("x_" + split, x[keep]), ("y_" + split, y[keep])):
            path = out / (FILES[key] + ".gz")
            idx.write_idx(path, a, compress=True)
            print(f"{path}: {a.shape} {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
