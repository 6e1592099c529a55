"""pip install --no-build-isolation of build/python works offline, and the
installed package finds its library and producer."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import PACKAGE_ROOT


def have_pip():
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not have_pip(), reason="no pip for this interpreter")
def test_pip_install_offline(tmp_path, mnist_dir):
    pytest.importorskip("torch")
    # Install from a copy: pip builds in the source folder.
    src = tmp_path / "src"
    shutil.copytree(PACKAGE_ROOT, src, ignore=shutil.ignore_patterns(
        "CMakeFiles", "Makefile", "*.cmake", "build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PIP_NO_INPUT="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    code = (
        "import datafeed, os\n"
        "assert datafeed.__file__.startswith(%r), datafeed.__file__\n"
        "assert datafeed.producer_path().startswith(%r)\n"
        "assert os.access(datafeed.producer_path(), os.X_OK)\n"
        "with datafeed.serve(%r, pipeline='to_tensor', batch_size=500, threads=1, epochs=1) as p:\n"
        "    with p.loader(timeout=20) as loader:\n"
        "        print(sum(image.shape[0] for image, label in loader))\n"
    ) % (str(target), str(target), mnist_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATAFEED_PRODUCER")}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000"
    # The console scripts (pyproject.toml [project.scripts]) run the bundled tools.
    for tool in ("datafeed-producer", "datafeed-make-mnist"):
        script = target / "bin" / tool
        assert os.access(str(script), os.X_OK), tool
        r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0 and r.stdout.startswith(tool + " "), r.stdout + r.stderr
