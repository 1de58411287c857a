"""The package's entry points: ``python -m cnnkern`` runs the command, ``--version`` prints the version,
and the py.typed marker ships with the sources."""

import pathlib
import subprocess
import sys

import pytest

import cnnkern
from cnnkern import cli


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's version action exits after printing
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnkern {cnnkern.__version__}"
    assert cnnkern.__version__ and cnnkern.__version__[0].isdigit()


def test_python_dash_m_runs_the_command():
    root = pathlib.Path(cnnkern.__file__).parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "cnnkern", "--version"], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"cnnkern {cnnkern.__version__}"


def test_py_typed_marker_is_present():
    assert (pathlib.Path(cnnkern.__file__).parent / "py.typed").is_file()
