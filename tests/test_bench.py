"""The benchmark engine (``cnnkern bench``): a tiny run end to end, and that its JSON holds what it says.

Runs on the reference backend at batch 2 with a few millisecond-long samples, so it takes seconds; the
numbers themselves are not checked (they are machine noise here), only their bookkeeping.
"""

import json
import time

import numpy as np
import pytest

from cnnkern import backends, cli
from cnnkern.backends.base import KERNELS
from cnnkern.bench import profile, runner, shapes, timing, workloads

CLASSIC_KERNELS = {
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "dense_forward",
    "dense_backward",
    "activation_forward",
    "activation_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "adam_update",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "run.json"
    with pytest.MonkeyPatch.context() as mp:  # the command sets thread variables for its own process
        for var in ("CNNKERN_NUM_THREADS", "NUMBA_NUM_THREADS"):
            mp.setenv(var, "1")
        status = cli.main(
            [
                "bench",
                "--backends",
                "reference",
                "--batch",
                "2",
                "--repeat",
                "3",
                "--quick",
                "--threads",
                "1",
                "--json",
                str(path),
            ]
        )
    with open(path) as f:
        return status, json.load(f)


def test_tiny_run_succeeds_and_records_its_settings(tiny_run):
    status, data = tiny_run
    assert status == 0
    meta = data["meta"]
    assert meta["settings"]["repeat"] == 3
    assert meta["settings"]["batches"] == [2]
    assert meta["settings"]["backends"] == ["reference"]
    assert meta["threads"] == {}  # the reference backend has no thread pool and torch was not asked for
    assert {"python", "numpy", "cnnkern"} <= set(meta["versions"])
    assert meta["machine"]["cpus"] >= 1
    assert set(meta["unavailable"]) == set(backends.NAMES) - set(backends.available())  # each with its reason
    assert meta["options"]["repeat"] == 3 and meta["options"]["quick"] is True


def test_tiny_run_covers_every_classic_kernel_and_the_steps(tiny_run):
    _, data = tiny_run
    kinds = {r["kernel"] for r in data["results"]}
    assert CLASSIC_KERNELS <= kinds
    assert CLASSIC_KERNELS <= set(KERNELS)
    # and the fused pair the model layer runs for each conv + ReLU + pool, with the pair's counts
    fused = {(r["kernel"], r["label"]): r for r in data["results"] if r["kernel"].startswith("conv2d_act_")}
    pair = shapes.conv_pool_pairs(2)["conv1+pool1"]
    assert fused[("conv2d_act_maxpool_forward", pair.label)]["flops"] == (
        2 * 2 * 32 * 26 * 26 * 9 + 2 * 32 * 13 * 13 * 3
    )
    assert {k for k, _ in fused} == {"conv2d_act_maxpool_forward", "conv2d_act_maxpool_backward"}
    assert len(fused) == 4  # conv1+pool1 and conv2+pool2
    assert {"train_step", "inference"} <= kinds
    labels = [r["label"] for r in data["results"]]
    assert "classic CNN training step b2" in labels
    assert not any("res64" in label for label in labels)  # --quick leaves out the ResNet-like convolutions


def test_json_samples_and_statistics_agree(tiny_run):
    _, data = tiny_run
    for rec in data["results"]:
        c = rec["candidates"]["reference"]
        assert c["status"] == "ok", (rec["label"], c["status"])
        samples = np.array(c["samples_s"])
        assert len(samples) == 3 and np.all(samples > 0)
        assert c["median_s"] == pytest.approx(np.median(samples))
        assert c["min_s"] == samples.min() and c["max_s"] == samples.max()
        assert c["q1_s"] <= c["median_s"] <= c["q3_s"]
        assert c["loops"] >= 1
        if rec["flops"]:
            assert c["gflops"] == pytest.approx(rec["flops"] / c["median_s"] / 1e9)
        if rec["bytes"]:
            assert c["gbs"] == pytest.approx(rec["bytes"] / c["median_s"] / 1e9)
        assert c["vs_torch"] is None  # no PyTorch in this run


def test_json_flop_counts_follow_the_layer_shapes(tiny_run):
    _, data = tiny_run
    by_label = {(r["kernel"], r["label"]): r for r in data["results"]}
    conv1 = by_label[("conv2d_forward", "conv1 1->32 28x28 3x3 b2")]
    assert conv1["flops"] == 2 * 2 * 32 * 26 * 26 * 1 * 9
    conv2_back = by_label[("conv2d_backward", "conv2 32->64 13x13 3x3 b2")]
    assert conv2_back["flops"] == 2 * (2 * 2 * 64 * 11 * 11 * 32 * 9) + 2 * 64 * 11 * 11
    conv1_back = by_label[("conv2d_backward", "conv1 1->32 28x28 3x3 b2")]  # no dx for the first layer
    assert conv1_back["flops"] == 2 * 2 * 32 * 26 * 26 * 9 + 2 * 32 * 26 * 26
    dense1 = by_label[("dense_forward", "dense1 576->64 b2")]
    assert dense1["flops"] == 2 * 2 * 576 * 64


def test_json_holds_the_peak_estimate(tiny_run):
    _, data = tiny_run
    blas = data["peak"]["blas"]
    assert "error" not in blas, blas.get("error")
    assert blas["gflops"] > 0 and blas["threads"] == 1
    assert data["peak"]["peak_gflops"] == pytest.approx(
        max([blas["gflops"], *data["peak"]["cpp_gemm"].values()])
    )


def test_interleaving_rotates_the_starting_candidate_and_settles_each_sample():
    calls = []
    cands = [timing.Candidate(name, lambda name=name: calls.append(name)) for name in "abc"]
    timing.measure(cands, repeat=4, target_s=1e-9, settle_s=0.0)
    assert all(c.loops == 1 and len(c.samples) == 4 for c in cands)
    # after calibration, four rounds of three samples, each sample an untimed settling call and one timed
    calls = calls[-24:]
    assert all(calls[2 * k] == calls[2 * k + 1] for k in range(12))  # settle, then time, the same candidate
    sampled = calls[::2]
    assert [sampled[3 * i] for i in range(4)] == ["a", "b", "c", "a"]
    assert all(sorted(sampled[3 * i : 3 * i + 3]) == ["a", "b", "c"] for i in range(4))


def test_each_sample_settles_for_settle_s():
    """Untimed calls of the sampled candidate fill settle_s before its timed calls (the previous runtime's
    spinning threads land there); loops timed calls follow."""
    runs = []

    def fn(name):
        runs.append((name, time.perf_counter()))
        time.sleep(0.001)

    cands = [timing.Candidate(name, lambda name=name: fn(name)) for name in "abc"]
    timing.measure(cands, repeat=2, target_s=0.002, settle_s=0.01)
    loops = {c.name: c.loops for c in cands}
    # group consecutive calls of one candidate: after calibration, each group is one sample (settling calls,
    # then `loops` timed ones); the rounds are a b c, then b c a
    groups = []
    for name, t in runs:
        if groups and groups[-1][0] == name:
            groups[-1][1].append(t)
        else:
            groups.append((name, [t]))
    samples = groups[-6:]
    assert [g[0] for g in samples] == ["a", "b", "c", "b", "c", "a"]
    for name, times in samples:
        settling = len(times) - loops[name]
        assert settling >= 1
        assert times[settling] - times[0] >= 0.01, f"{name} settled for {times[settling] - times[0]:.4f} s"


def test_a_wrong_result_is_not_timed_and_fails_the_run(monkeypatch, capsys):
    spec = shapes.Conv("tiny", 1, 2, 3, 5, 5)
    work = workloads.ConvForward(spec)
    right = work.expected()[0].astype(np.float32)
    wrong = right.copy()
    wrong[0, 1, 2, 2] += 1.0
    assert work.check((right,)) is None
    assert "output 0" in work.check((wrong,))

    # the command, with this one workload, a lying and an honest candidate, and no peak measurement
    monkeypatch.setattr(runner, "workloads", lambda settings: [work])
    monkeypatch.setattr(
        runner,
        "candidates",
        lambda workload, settings: [
            ("liar", lambda: lambda: (wrong,), None),
            ("honest", lambda: lambda: (right,), None),
        ],
    )
    monkeypatch.setattr(
        runner.peak,
        "estimate",
        lambda *a, **k: {"blas": {"error": "not measured in this test"}, "cpp_gemm": {}, "peak_gflops": None},
    )
    status = cli.main(["bench", "--backends", "reference", "--quick", "--repeat", "2", "--threads", "1"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "liar: NOT TIMED: output 0" in err
    assert "1 candidate(s) not timed" in err
    table = out[out.index("conv2d_forward  tiny") :]
    assert "liar        not timed: output 0" in table
    assert "honest" in table and "not timed" not in table.split("honest", 1)[1]


def test_unknown_backend_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--backends", "nonesuch"])
    assert exc.value.code == 2
    assert "nonesuch" in capsys.readouterr().err


def test_profile_attributes_every_kernel_call_to_a_layer():
    prof = profile.profile_step(backends.get("reference"), batch=2, steps=1, warmup=1)
    layers = {r["layer"] for r in prof["rows"]}
    # every call recognised, none missing; each Conv2D + ReLU + MaxPooling2D runs as one kernel pair
    # (conv2d_act_maxpool_*), reported as one layer 'conv1+pool1'; conv3's ReLU forward is fused into the conv
    expect = set(shapes.classic_layers(2)) - {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2"}
    assert layers == expect | {"conv1+pool1", "conv2+pool2"}
    for pair in ("conv1+pool1", "conv2+pool2"):
        rows = [r for r in prof["rows"] if r["layer"] == pair]
        assert {r["kernel"] for r in rows} == {"conv2d_act_maxpool_forward", "conv2d_act_maxpool_backward"}
        assert all(r["calls"] == 1 and r["flops"] > 0 and r["bytes"] > 0 for r in rows)
    conv3 = [r for r in prof["rows"] if r["layer"] == "conv3"]
    # the model layer runs conv + bias + relu as one fused kernel, and Adam as one call over all parameters
    assert {r["kernel"] for r in conv3} == {"conv2d_bias_act_forward", "conv2d_backward"}
    assert all(r["calls"] == 1 for r in conv3)
    adam = next(r for r in prof["rows"] if r["layer"] == "adam")
    assert adam["kernel"] == "adam_update_multi" and adam["calls"] == 1
    assert adam["flops"] == 12 * shapes.Params("p", shapes.CLASSIC_PARAM_SHAPES).count
    assert prof["kernels_s"] == pytest.approx(sum(r["seconds"] for r in prof["rows"]))
    assert prof["kernels_s"] + prof["outside_s"] == pytest.approx(prof["step_s"])
    assert 0 < prof["kernels_s"] < prof["step_s"]


def test_plot_is_written(tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: the --plot option needs it")
    from cnnkern.bench import report

    path = tmp_path / "bench.png"
    report.plot(tiny_run[1], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_kernel_workload_has_a_working_pytorch_peer():
    # the peers import cnnkern.torch_ref lazily; a wrong relative import fails only when torch is there
    pytest.importorskip("torch")
    work = workloads.classic_workloads(2) + [workloads.SgdStep(shapes.classic_layers(2)["adam"])]
    for w in work:
        assert w.check(w.bind_torch()()) is None, f"{w.kernel} {w.label}"
