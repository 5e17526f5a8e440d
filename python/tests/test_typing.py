"""The package's types: the native module's stub matches it, and the
whole package passes mypy --strict."""

import os
import subprocess
import sys

import pytest


mypy = pytest.importorskip("mypy")


def run(args, cwd):
    r = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_stubs_match_the_native_module(tmp_path):
    run(["mypy.stubtest", "recur", "--allowlist", os.devnull], tmp_path)


def test_package_is_strictly_typed(tmp_path):
    run(["mypy", "--strict", "-p", "recur"], tmp_path)
