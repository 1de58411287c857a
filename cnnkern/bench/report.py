"""What ``cnnkern bench`` prints and writes: the results table, the profile table, the JSON file, the plot."""

from __future__ import annotations

import json
import os
from typing import Any

from .._io import atomic_save, atomic_write
from .._typing import PathLike

GEMM_KERNELS = (
    "train_step",
    "inference",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_act_maxpool_forward",
    "conv2d_act_maxpool_backward",
    "dense_forward",
    "dense_backward",
)


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def peak_text(peak: dict[str, Any]) -> str:
    blas = peak["blas"]
    if "error" in blas:
        lines = [f"BLAS sgemm: {blas['error']}"]
    else:
        cleared = f", {'/'.join(blas['cleared'])} cleared for it" if blas.get("cleared") else ""
        lines = [
            f"BLAS sgemm ({blas['blas']}, n={blas['n']}, {blas['threads']} threads, subprocess{cleared}): "
            f"{blas['gflops']:.1f} GFLOP/s"
        ]
    for path, rate in peak["cpp_gemm"].items():
        lines.append(f"cpp GEMM ({path}, dense_forward 512^3): {rate:.1f} GFLOP/s")
    est = peak["peak_gflops"]
    lines.append(f"FMA peak estimate (best of the above): {_num(est, '.1f')} GFLOP/s")
    return "\n".join(lines)


def table(data: dict[str, Any]) -> str:
    """The results, one block per workload, one line per candidate."""
    meta = data["meta"]
    out = [
        f"cnnkern bench  {meta['date']}  {meta['machine']['cpu']}  threads {meta['threads']}",
        f"versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        *(f"not run, unavailable here: {name}: {why}" for name, why in meta.get("unavailable", {}).items()),
        peak_text(data["peak"]),
        f"times: median of {meta['settings']['repeat']} interleaved samples; IQR = q3 - q1; "
        f"t/torch = {meta['ratios']}",
        "",
    ]
    head = (
        f"  {'candidate':<12}{'median':>10}{'IQR':>10}{'min-max':>20}{'GFLOP/s':>9}{'GB/s':>7}{'%peak':>7}"
        f"{'t/torch':>9}{'t/torch-cl':>11}"
    )
    for rec in data["results"]:
        work = f"{rec['flops'] / 1e9:.3g} GFLOP" if rec["flops"] else ""
        if rec["bytes"]:
            work += f", {rec['bytes'] / 1e6:.3g} MB"
        out += [f"{rec['kernel']}  {rec['label']}  ({work})", head]
        for name, c in rec["candidates"].items():
            if c["status"] != "ok":
                out.append(f"  {name:<12}{c['status']}")
                continue
            gemm = rec["kernel"] in GEMM_KERNELS
            span = f"{fmt_time(c['min_s'])}-{fmt_time(c['max_s'])}"
            out.append(
                f"  {name:<12}{fmt_time(c['median_s']):>10}{fmt_time(c['q3_s'] - c['q1_s']):>10}{span:>20}"
                f"{_num(c['gflops'], '.1f'):>9}{_num(c['gbs'], '.1f'):>7}"
                f"{_num(c['pct_peak'] if gemm else None, '.0f'):>7}"
                f"{_num(c['vs_torch'], '.2f'):>9}{_num(c['vs_torch_cl'], '.2f'):>11}"
            )
        out.append("")
    return "\n".join(out)


def profile_table(prof: dict[str, Any]) -> str:
    """The per-kernel breakdown of one profiled training step (or inference pass)."""
    info = "  ".join(f"{k}={v}" for k, v in prof["info"].items())
    step = prof["step_s"]
    lw = max([8] + [len(r["layer"]) + 2 for r in prof["rows"]])  # 'conv1+pool1': a fused pair
    out = [
        f"{prof['backend']} {prof.get('workload', 'training step')}, batch {prof['batch']}: "
        f"{fmt_time(step)} per step "
        f"(mean of {prof['steps']}; {info})",
        f"  {'layer':<{lw}}{'kernel':<32}{'calls':>6}{'time/step':>11}{'share':>7}{'GFLOP/s':>9}{'GB/s':>7}",
    ]
    for r in prof["rows"]:
        gflops = r["flops"] / r["seconds"] / 1e9 if r["flops"] and r["seconds"] else None
        gbs = r["bytes"] / r["seconds"] / 1e9 if r["bytes"] and r["seconds"] else None
        out.append(
            f"  {r['layer']:<{lw}}{r['kernel']:<32}{r['calls']:>6.0f}{fmt_time(r['seconds']):>11}"
            f"{100 * r['seconds'] / step:>6.1f}%{_num(gflops, '.1f'):>9}{_num(gbs, '.1f'):>7}"
        )
    out.append(
        f"  {'':<{lw}}{'kernels, total':<32}{'':>6}{fmt_time(prof['kernels_s']):>11}"
        f"{100 * prof['kernels_s'] / step:>6.1f}%"
    )
    out.append(
        f"  {'':<{lw}}{'outside the kernels':<32}{'':>6}{fmt_time(prof['outside_s']):>11}"
        f"{100 * prof['outside_s'] / step:>6.1f}%   (front door, model layer, Python)"
    )
    return "\n".join(out)


def write_json(data: Any, path: PathLike) -> None:
    with atomic_write(path, "w") as f:  # a crash mid-write never leaves a half file
        json.dump(data, f, indent=1)
        f.write("\n")


def plot(data: dict[str, Any], path: PathLike) -> None:
    """A horizontal bar chart, one group per workload: PyTorch's median time over each candidate's (above 1:
    faster than PyTorch), or without PyTorch each candidate's speed relative to the slowest. IQR whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in data["results"] if any(c["status"] == "ok" for c in r["candidates"].values())]
    names: list[str] = []
    for r in records:
        names += [n for n, c in r["candidates"].items() if c["status"] == "ok" and n not in names]
    height = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.35 * len(records) * max(1, len(names)) * 0.5))
    with_torch = any(
        "torch" in r["candidates"] and r["candidates"]["torch"]["status"] == "ok" for r in records
    )
    for j, name in enumerate(names):
        ys: list[float] = []
        vals: list[float] = []
        errs: list[list[list[float]]] = []
        for i, r in enumerate(records):
            c = r["candidates"].get(name)
            if not c or c["status"] != "ok":
                continue
            ok = [v["median_s"] for v in r["candidates"].values() if v["status"] == "ok"]
            torch = r["candidates"].get("torch")
            base = torch["median_s"] if with_torch and torch and torch["status"] == "ok" else max(ok)
            ys.append(i + j * height)
            vals.append(base / c["median_s"])
            errs.append(
                [[base / c["median_s"] - base / c["q3_s"]], [base / c["q1_s"] - base / c["median_s"]]]
            )
        if vals:
            lo = [e[0][0] for e in errs]
            hi = [e[1][0] for e in errs]
            ax.barh(ys, vals, height=height, xerr=[lo, hi], label=name, capsize=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(records))])
    ax.set_yticklabels([f"{r['kernel']}: {r['label']}" for r in records], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(
        "PyTorch time / time (above 1: faster than PyTorch)"
        if with_torch
        else "speed relative to the slowest candidate"
    )
    counts = sorted(set(data["meta"]["threads"].values()))
    if len(counts) == 1:
        threads = f"{counts[0]} thread{'s' if counts[0] != 1 else ''}"
    else:
        threads = f"threads {data['meta']['threads']}"
    ax.set_title(f"cnnkern bench, {data['meta']['machine']['cpu']}, {threads}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    atomic_save(path, lambda f: fig.savefig(f, format=fmt, dpi=110))
    plt.close(fig)
