"""``cnnkern bench --int8``: a tiny run prints float32, int8 and PyTorch int8 side by side (PyTorch's column
left out, saying why, without torch); its JSON holds each candidate's samples and the ratios."""

import json

import pytest

from cnnkern import cli, torch_ref

TINY = ["bench", "--int8", "--batch", "1,3", "--repeat", "1", "--quick", "--threads", "1"]


def _rows(out):
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model"))
    return lines[head], [line.split() for line in lines[head + 1 : head + 5]]


def test_bench_int8_prints_the_three_columns(capsys, tmp_path):
    if torch_ref.torch_version() is None:
        pytest.skip('torch is not installed (pip install "cnnkern[torch]"): no PyTorch int8 column to check')
    assert cli.main([*TINY, "--json", str(tmp_path / "int8.json")]) == 0
    out = capsys.readouterr().out
    head, rows = _rows(out)
    assert all(c in head for c in ("float32 ms", "int8 ms", "torch int8 ms", "int8/float32", "int8/torch"))
    assert [(r[0], r[1]) for r in rows] == [
        ("classic", "1"),
        ("classic", "3"),
        ("vgg_bn", "1"),
        ("vgg_bn", "3"),
    ]
    for r in rows:
        times = [float(v) for v in r[2:5]]
        assert all(t > 0 for t in times)
        assert float(r[5]) == pytest.approx(times[1] / times[0], abs=0.01)
    with open(tmp_path / "int8.json") as f:
        data = json.load(f)
    for rec in data["int8"]:
        assert set(rec["candidates"]) == {"float32", "int8", "torch int8"}
        for c in rec["candidates"].values():
            assert len(c["samples_s"]) == 1 and c["median_s"] == c["samples_s"][0]


def test_bench_int8_without_torch_says_why(capsys, monkeypatch):
    monkeypatch.setattr(torch_ref, "torch_version", lambda: None)  # as on a machine without torch
    assert cli.main([*TINY, "--int8", "classic"]) == 0
    out = capsys.readouterr().out
    head, rows = _rows(out)
    assert "torch int8 ms" in head and all(r[4] == "-" and r[6] == "-" for r in rows[:2])
    assert 'no torch int8 column: torch is not installed: pip install "cnnkern[torch]"' in out


def test_bench_int8_refuses_what_it_does_not_time(capsys):
    with pytest.raises(SystemExit):
        cli.main([*TINY, "--profile"])
    assert "does not combine with --profile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--int8", "resnet"])
    assert "unknown model 'resnet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--recipe", "wide-bn", "--int8"])
    assert "does not combine with --zoo, --int8" in capsys.readouterr().err
