"""The package's type hints: mypy --strict passes on python/datafeed, the
built package carries py.typed (PEP 561), and a user's mistake against the
hints is caught."""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import PACKAGE_ROOT, SOURCE_DIR


def mypy(args, cwd, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed for %s: apt-get install python3-mypy (scripts/deps.sh)" % sys.executable)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", os.devnull] + args,
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )


def test_package_passes_mypy_strict():
    r = mypy(["--strict", os.path.join(SOURCE_DIR, "python", "datafeed")], SOURCE_DIR)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout


def test_built_package_is_marked_typed():
    assert os.path.isfile(os.path.join(PACKAGE_ROOT, "datafeed", "py.typed"))


def test_user_code_is_checked_against_the_hints(tmp_path):
    (tmp_path / "user.py").write_text(textwrap.dedent('''
        import datafeed

        loader = datafeed.Loader("shm://x", prefetch=2, consumers=2)
        steps: int = len(loader) * 3
        with datafeed.Writer("shm://y", slots=4) as w:
            w.publish(epoch="one")
    '''))
    r = mypy(["--strict", str(tmp_path / "user.py")], str(tmp_path), {"MYPYPATH": os.path.join(SOURCE_DIR, "python")})
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert 'Argument "epoch" to "publish" of "Writer" has incompatible type "str"' in out, out
    assert out.count("error:") == 1, out
