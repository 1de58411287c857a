"""Run by tests/test_distributed.py under ``mpirun`` (one process per rank): trains the classic CNN with
``distributed=...`` and writes what the test compares, or plays one of the failure cases.

    python tests/mpi_worker.py train OPT STEPS BATCH OUT MODE BACKEND DTYPE  # writes OUT.rank{r}.npz
                                                           # MODE: none, ordered, allreduce, blocksK
    python tests/mpi_worker.py raise|stall                 # rank 1 fails mid-backward at step 3
    python tests/mpi_worker.py config                      # rank 1 differs: model, batch, seed, backend
    python tests/mpi_worker.py blocks OUT                  # reduction_block=4, batch norm, dropout
    python tests/mpi_worker.py uneven OUT                  # uneven and empty shards, dropout, validation
    python tests/mpi_worker.py resume DIR                  # BackupAndRestore: 1 epoch, then resume to 2
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

import numpy as np

from cnnkern import callbacks, distributed, layers, models, optimizers


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bundled Fashion-MNIST images (the first n), scaled to [0, 1]."""
    from cnnkern.datasets import fashion_mnist

    (x, y), _ = fashion_mnist.load_data(subset=True)
    return x[:n, :, :, None].astype(np.float32) / 255.0, y[:n].astype(np.int64)


def model(
    opt: str, seed: int = 0, filters: int = 32, backend: str = "cpp", dtype: str = "float32"
) -> models.Sequential:
    """The classic CNN with SGD + momentum or Adam."""
    m = models.Sequential(seed=seed, backend=backend, dtype=dtype)
    m.add(layers.Conv2D(filters, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Conv2D(64, (3, 3), activation="relu"))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Conv2D(64, (3, 3), activation="relu"))
    m.add(layers.Flatten())
    m.add(layers.Dense(64, activation="relu"))
    m.add(layers.Dense(10, activation="softmax"))
    o = optimizers.SGD(0.05, momentum=0.9) if opt == "sgd" else optimizers.Adam(1e-3)
    m.compile(optimizer=o, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def digest(m: models.Sequential) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for w in m.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.digest()


class Digests(callbacks.Callback):
    """The weights' digest after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append(digest(self.model))


def train(opt: str, steps: int, batch: int, out: str, strategy: Any, backend: str, dtype: str) -> None:
    x, y = data(steps * batch)
    m = model(opt, backend=backend, dtype=dtype)
    rec = Digests()
    hist = m.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[rec], distributed=strategy)
    rank = 0 if strategy is None else strategy.rank
    digests = np.frombuffer(b"".join(rec.seen), np.uint8).reshape(len(rec.seen), -1)
    ev = strategy.evaluate(m, x[:100], y[:100]) if strategy is not None else m.evaluate(x[:100], y[:100])
    np.savez(
        f"{out}.rank{rank}.npz",
        digests=digests,
        loss=hist.history["loss"],
        accuracy=hist.history["accuracy"],
        evaluate=np.asarray(ev),
        **{f"arr_{i}": w for i, w in enumerate(m.get_weights())},
    )


def uneven(out: str, strategy: Any) -> None:
    """33 samples at batch 16, 2 epochs: shards of 8 + 8, and a last batch of one row (an empty shard on
    rank 0); with Dropout (masks drawn for the global batch) and validation data (evaluated by shares)."""
    x, y = data(33)
    m = models.Sequential(seed=0, backend="cpp")
    m.add(layers.Conv2D(8, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.3))
    m.add(layers.Dense(10, activation="softmax"))
    m.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x[:7], y[:7]), distributed=strategy)
    rank = 0 if strategy is None else strategy.rank
    logs = {k: np.asarray(v) for k, v in h.history.items()}
    np.savez(
        f"{out}.rank{rank}.npz",
        **logs,
        rng=m.rng.random(3),
        **{f"arr_{i}": w for i, w in enumerate(m.get_weights())},
    )


def blocks(out: str, strategy: Any) -> None:
    """reduction_block=4: 38 samples at batch 16 (blocks of 4, 4, 4, 4 / 4, 4, 4, 4 / 4, 2), 2 epochs,
    with batch norm (its running statistics averaged over the blocks) and dropout: written for comparison
    across rank counts (the run must give the same bits with any)."""
    x, y = data(38)
    m = models.Sequential(seed=0, backend="cpp")
    m.add(layers.Conv2D(8, (3, 3), input_shape=(28, 28, 1)))
    m.add(layers.BatchNormalization())
    m.add(layers.Activation("relu"))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.3))
    m.add(layers.Dense(10, activation="softmax"))
    m.compile(optimizer=optimizers.Adam(1e-3), metrics=["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=2, verbose=0, distributed=strategy)
    logs = {k: np.asarray(v) for k, v in h.history.items()}
    state = {f"state_{i}_{k}": a for i, layer in enumerate(m.layers) for k, a in layer.state.items()}
    np.savez(
        f"{out}.ranks{strategy.num_replicas}.rank{strategy.rank}.npz",
        **logs,
        **state,
        rng=m.rng.random(3),
        **{f"arr_{i}": w for i, w in enumerate(m.get_weights())},
    )


def inject(m: models.Sequential, kind: str, at_step: int = 3) -> None:
    """On rank 1: the first conv's backward (run after the later layers' buckets were sent) raises or
    stalls at step ``at_step``."""
    layer = m.layers[0]
    plain = layer.backward
    calls = [0]

    def backward(dy: Any, need_dx: bool = True) -> Any:
        calls[0] += 1
        if calls[0] == at_step:
            if kind == "raise":
                raise ValueError("injected failure on rank 1 in the middle of the gradient allreduce")
            time.sleep(600)
        return plain(dy, need_dx)

    layer.backward = backward  # type: ignore[method-assign]


def make_strategy(mode: str) -> distributed.MPIStrategy:
    """``ordered`` (rank order), ``allreduce`` (MPI's order) or ``blocksK`` (reduction_block=K)."""
    if mode.startswith("blocks"):
        return distributed.MPIStrategy(reduction_block=int(mode[len("blocks") :]))
    return distributed.MPIStrategy(deterministic=mode == "ordered")


def main(argv: list[str]) -> None:
    case = argv[0]
    if case == "train":
        opt, steps, batch, out, mode, backend, dtype = argv[1:8]
        strategy = None if mode == "none" else make_strategy(mode)
        train(opt, int(steps), int(batch), out, strategy, backend, dtype)
    elif case == "resume":
        strategy = distributed.MPIStrategy()
        x, y = data(64)
        straight = model("adam")
        straight.fit(x, y, batch_size=16, epochs=2, verbose=0, distributed=strategy)
        ckdir = argv[1]
        first = model("adam")
        backup = callbacks.BackupAndRestore(ckdir, save_freq=3, delete_checkpoint=False)
        first.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[backup], distributed=strategy)
        resumed = model("adam")
        backup = callbacks.BackupAndRestore(ckdir)
        resumed.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[backup], distributed=strategy)
        same = all((a == b).all() for a, b in zip(straight.get_weights(), resumed.get_weights()))
        print(f"RESUME rank {strategy.rank}: from {backup.restored_from}, same weights: {same}", flush=True)
    elif case == "blocks":
        blocks(argv[1], distributed.MPIStrategy(reduction_block=4))
    elif case == "uneven":
        uneven(argv[1], distributed.MPIStrategy())
    elif case in ("raise", "stall"):
        strategy = distributed.MPIStrategy(timeout=float(argv[1]) if len(argv) > 1 else 5.0)
        x, y = data(160)
        m = model("sgd")
        if strategy.rank == 1:
            inject(m, case)
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, distributed=strategy)
        print(f"rank {strategy.rank}: fit returned", flush=True)
    elif case == "config":
        strategy = distributed.MPIStrategy(timeout=20.0)
        x, y = data(64)
        r1 = strategy.rank == 1
        variants = {
            "model": dict(make=lambda: model("sgd", filters=16 if r1 else 32)),
            "batch": dict(make=lambda: model("sgd"), batch=32 if r1 else 16),
            "seed": dict(make=lambda: model("sgd", seed=1 if r1 else 0)),
            "backend": dict(make=lambda: model("sgd", backend="reference" if r1 else "cpp")),
        }
        for name, v in variants.items():
            try:
                v["make"]().fit(x, y, batch_size=v.get("batch", 16), verbose=0, distributed=strategy)
            except distributed.DistributedConfigError as exc:
                print(f"CONFIG {name} rank {strategy.rank}: {exc}", flush=True)
            else:
                print(f"CONFIG {name} rank {strategy.rank}: no error", flush=True)
        # the strategy is still usable after a configuration error (every rank raised it together)
        model("sgd").fit(x, y, batch_size=16, verbose=0, distributed=strategy)
        print(f"CONFIG rank {strategy.rank}: same configuration trained", flush=True)
    else:
        raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
