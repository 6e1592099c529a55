"""The package imports without torch and says what is missing when a tensor
is asked for; the library exports exactly the C ABI the package binds."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import DTYPE_WRITER, PACKAGE_ROOT, SOURCE_DIR, run_python, unique_name

# Makes `import torch` (and torchvision) fail as if it were not installed.
BLOCK_TORCH = r"""
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchvision")):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def test_import_does_not_load_torch():
    r = run_python("import sys, datafeed; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_imports_without_torch_and_names_it_when_a_tensor_is_needed(spawn):
    name = unique_name("notorch")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 1, "--hold-s", 5])
    code = BLOCK_TORCH + r"""
import datafeed
assert datafeed.Loader and datafeed.serve and datafeed.Error
loader = datafeed.Loader("shm://%s", connect_timeout=20)   # opening needs no torch
print("stats", loader.stats()["batches"])
try:
    next(loader)
except ImportError as e:
    print("next:", e)
try:
    datafeed.IterableDataset
except ImportError as e:
    print("dataset:", e)
loader.close()
""" % name
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "stats 0"
    assert lines[1].startswith("next:") and "torch" in lines[1] and "pip install torch" in lines[1]
    assert lines[2].startswith("dataset:") and "torch" in lines[2]


def test_missing_library_is_a_clear_error(tmp_path):
    r = run_python(
        "import datafeed\ntry:\n  datafeed.Loader('shm://x')\nexcept ImportError as e:\n  print(e)",
        env_extra={"DATAFEED_LIBRARY": str(tmp_path / "nope.so")},
    )
    assert r.returncode == 0, r.stderr
    assert "nope.so is missing" in r.stdout


def header_functions():
    with open(os.path.join(SOURCE_DIR, "python", "capi", "datafeed_c.h")) as f:
        text = f.read()
    return sorted(set(re.findall(r"DF_API\s+[^;(]*?\b(df_\w+)\s*\(", text)))


def test_bindings_match_the_header():
    from datafeed import _capi

    assert header_functions() == sorted(_capi._PROTOTYPES)
    lib = _capi.lib()
    assert lib.df_abi_version() == _capi.ABI_VERSION
    assert [lib.df_dtype_name(c).decode() for c in range(1, 11)] == [
        "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64", "bool"
    ]
    assert [lib.df_dtype_size(c) for c in range(1, 11)] == [1, 1, 2, 4, 8, 2, 2, 4, 8, 1]
    assert lib.df_status_name(8) == b"EndOfStream"


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_library_exports_only_the_c_abi():
    so = os.path.join(PACKAGE_ROOT, "datafeed", "libdatafeed_c.so")
    out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True)
    exported = sorted(line.split()[-1] for line in out.stdout.splitlines() if line.strip())
    assert exported == header_functions()
