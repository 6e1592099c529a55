"""examples/python/gpu_run.sh pack: the tarball runs on a machine without our
libraries. Checked here by unpacking it and running its binaries with a
clean environment, verifying that every bundled dependency is loaded from
the bundle."""

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from conftest import BUILD_DIR, SOURCE_DIR

GPU_RUN = os.path.join(SOURCE_DIR, "examples", "python", "gpu_run.sh")

def left_to_the_machine(names):
    """The names among `names` a bundle does not carry in lib/ (glibc, the
    C++ runtime), by the packer's own rules in scripts/bundle_lib.sh."""
    script = os.path.join(SOURCE_DIR, "scripts", "bundle_lib.sh")
    out = subprocess.run(
        ["bash", "-c", 'source "$0"; for n; do '
         'if bundle_is_system_lib "$n" || bundle_is_compat_lib "$n"; then echo "$n"; fi; done',
         script] + list(names), capture_output=True, text=True, check=True).stdout
    return set(out.split())

pytestmark = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    work = tmp_path_factory.mktemp("bundle")
    out = work / "datafeed-gpu.tar"  # .tar: uncompressed, quick; .tar.gz is the same bundle
    r = subprocess.run(["bash", GPU_RUN, "pack", BUILD_DIR, str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        tar.extractall(work / "x")
    out.unlink()
    root = work / "x" / "datafeed-gpu"
    manifest = dict(line.split("=", 1) for line in (root / "MANIFEST").read_text().splitlines())
    yield root, manifest
    shutil.rmtree(work, ignore_errors=True)  # ~220 MB; pytest keeps old temp dirs


def clean_env(root, manifest):
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    if manifest["rpath"] != "yes":
        env["LD_LIBRARY_PATH"] = str(root / "lib")
    return env


def test_bundle_layout(bundle):
    root, manifest = bundle
    for rel in ("gpu_run.sh", "mnist_train.py", "python/datafeed/__init__.py",
                "python/datafeed/libdatafeed_c.so", "python/datafeed/bin/datafeed-producer",
                "compat/libstdc++.so.6"):
        assert (root / rel).exists(), rel
    libs = os.listdir(root / "lib")
    for name in ("libgrpc++", "libprotobuf", "libopencv_core", "libabsl_"):
        assert any(lib.startswith(name) for lib in libs), name
    assert not left_to_the_machine(libs)
    assert manifest["glibc_required"].startswith("2.")


def test_bundled_binaries_load_only_bundled_libraries(bundle):
    root, manifest = bundle
    if manifest["rpath"] != "yes":
        pytest.skip("packed without patchelf: the bundle relies on LD_LIBRARY_PATH")
    env = clean_env(root, manifest)
    producer = root / "python" / "datafeed" / "bin" / "datafeed-producer"
    r = subprocess.run([str(producer), "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Usage: datafeed-producer" in r.stdout, r.stderr
    for elf in (producer, root / "python" / "datafeed" / "libdatafeed_c.so"):
        r = subprocess.run(["ldd", str(elf)], env=env, capture_output=True, text=True, check=True)
        lines = [line.strip() for line in r.stdout.splitlines() if "=>" in line]
        system = left_to_the_machine(line.split()[0] for line in lines)
        for line in lines:
            if line.split()[0] in system:
                continue
            path = os.path.realpath(line.split("=>")[1].split("(")[0].strip())
            assert path.startswith(os.path.realpath(root / "lib") + os.sep), "%s: %s" % (elf.name, line.strip())


def test_bundled_package_serves_and_loads(bundle, mnist_dir):
    pytest.importorskip("torch")
    root, manifest = bundle
    env = clean_env(root, manifest)
    env["PYTHONPATH"] = str(root / "python")
    code = (
        "import datafeed\n"
        "with datafeed.serve(%r, pipeline='to_tensor', batch_size=500, threads=1, epochs=1) as p:\n"
        "    assert p.args[0].startswith(%r), p.args\n"
        "    with p.loader(timeout=20) as loader:\n"
        "        n = sum(image.shape[0] for image, _ in loader)\n"
        "maps = open('/proc/self/maps').read()\n"
        "grpc = [l.split()[-1] for l in maps.splitlines() if 'libgrpc++' in l]\n"
        "print(n, grpc[0])\n"
    ) % (mnist_dir, str(root))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60, cwd=str(root))
    assert r.returncode == 0, r.stderr
    n, grpc = r.stdout.split()
    assert n == "1000"
    if manifest["rpath"] == "yes":
        assert grpc.startswith(str(root / "lib")), grpc


def test_gpu_run_check(bundle, mnist_dir):
    # The run step's machine checks and a producer smoke run (no GPU needed).
    pytest.importorskip("torch")
    root, manifest = bundle
    env = clean_env(root, manifest)
    r = subprocess.run(["bash", str(root / "gpu_run.sh"), "check", "--python", sys.executable,
                        "--mnist", mnist_dir, "--batch-size", "500"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "check passed" in r.stderr


def test_gpu_run_all_dry_run(bundle):
    # `gpu_run.sh all --dry-run`: the GPU run's rows tiny on the CPU, from the
    # unpacked bundle with a scrubbed environment. Every row must come back
    # as a JSON line with its figures (or the DataLoader row's reason when
    # torchvision is missing), then the summary table.
    pytest.importorskip("torch")
    root, manifest = bundle
    env = clean_env(root, manifest)
    r = subprocess.run(["bash", str(root / "gpu_run.sh"), "all", "--dry-run", "--python", sys.executable],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    names = [row["row"] for row in rows]
    for want in ("datafeed-shm-1t", "datafeed-shm-2t", "datafeed-shm-4t", "datafeed-shm-split-4t-noblur",
                 "dataloader-2w"):
        assert want in names, (want, r.stdout)
    assert any(n.startswith("ceiling (resident batch") for n in names), r.stdout
    for row in rows:
        assert "error" not in row, row
        assert row["samples_per_s"] > 0, row
        if "data_wait_frac" in row:
            assert 0 <= row["data_wait_frac"] <= 1, row
            assert row["device"] == "cpu", row
    split = rows[names.index("datafeed-shm-split-4t-noblur")]
    assert split["pipeline"].startswith("|"), split
    assert "gpu_run all: 6 rows, 0 failed" in r.stdout, r.stdout
