"""examples/python/mnist_train.py runs end to end on both sources (tiny)."""

import json
import os

import pytest

pytest.importorskip("torch")

from conftest import SOURCE_DIR, run_python

EXAMPLE = os.path.join(SOURCE_DIR, "examples", "python", "mnist_train.py")
TINY = ["--batch-size", "64", "--steps", "3", "--ceiling-steps", "1", "--log-every", "0", "--json"]


def run_example(*args):
    code = "import runpy, sys; sys.argv = %r; runpy.run_path(%r, run_name='__main__')" % (
        [EXAMPLE, *args], EXAMPLE)
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(result, source):
    assert result["source"] == source
    assert result["batch"] == 64 and result["steps"] == 3
    assert result["step_s"] > 0 and result["ceiling_step_s"] > 0 and result["ratio"] > 0
    assert 0 <= result["data_wait_frac"] <= 1
    assert result["blur"] is True


def test_example_datafeed_serve(mnist_dir):
    result = run_example("--source", "datafeed", "--serve", "--mnist", mnist_dir,
                         "--producer-threads", "1", *TINY)
    check(result, "datafeed")
    assert result["transport"] == "shm"
    assert 0 <= result["library_wait_frac"] <= 1


def test_example_dataloader(mnist_dir):
    pytest.importorskip("torchvision")
    result = run_example("--source", "dataloader", "--mnist", mnist_dir, "--workers", "1", *TINY)
    check(result, "dataloader")
