"""A failed import of the native module says what actually failed."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import berth

PKG_DIR = pathlib.Path(berth.__file__).resolve().parent
SOURCE_PKG = pathlib.Path(__file__).resolve().parents[1] / "berth"


def _import_berth_from(path: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """`import berth` in a child with `path` first on sys.path (run from path,
    so the current directory adds nothing else)."""
    env = dict(os.environ, PYTHONPATH=str(path))
    return subprocess.run(
        [sys.executable, "-c", "import berth"],
        cwd=path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _copy_of_the_installed_package(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(PKG_DIR, tmp_path / "berth", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "berth"


def _libberth(pkg: pathlib.Path) -> pathlib.Path:
    (lib,) = pkg.glob("libberth*.so*")
    return lib


def test_missing_libberth_is_named(tmp_path):
    pkg = _copy_of_the_installed_package(tmp_path)
    _libberth(pkg).unlink()
    out = _import_berth_from(tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), out.stderr
    assert "libberth.so.0: cannot open shared object file" in last, last
    assert "source tree" not in out.stderr


def test_corrupt_libberth_is_named(tmp_path):
    pkg = _copy_of_the_installed_package(tmp_path)
    lib = _libberth(pkg)
    lib.write_bytes(b"not an ELF file\n" * 8)
    out = _import_berth_from(tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert lib.name in last and "invalid ELF header" in last, last
    assert "source tree" not in out.stderr


@pytest.mark.skipif(not (SOURCE_PKG / "__init__.py").is_file(), reason="run from a source checkout")
def test_source_tree_says_install_the_package():
    if any(SOURCE_PKG.glob("_berth*.so")):
        pytest.skip("an extension was built into the source tree")
    out = _import_berth_from(SOURCE_PKG.parent)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "source tree" in last and "pip install" in last, last
