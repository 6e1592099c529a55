"""Shared fixtures for the datafeed Python tests.

Run by ctest (python/CMakeLists.txt) with PYTHONPATH=build/python and
DATAFEED_BUILD_DIR=build; by hand:

    PYTHONPATH=build/python DATAFEED_BUILD_DIR=build /usr/bin/python3 -m pytest tests/python
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.path.abspath(os.environ.get("DATAFEED_BUILD_DIR") or os.path.join(SOURCE_DIR, "build"))
PACKAGE_ROOT = os.path.join(BUILD_DIR, "python")

if PACKAGE_ROOT not in sys.path and not os.environ.get("DATAFEED_TEST_INSTALLED"):
    sys.path.insert(0, PACKAGE_ROOT)

PRODUCER = os.path.join(BUILD_DIR, "producer", "datafeed-producer")
CONSUME = os.path.join(BUILD_DIR, "consumer", "datafeed-consume")
MAKE_MNIST = os.path.join(BUILD_DIR, "producer", "datafeed-make-mnist")
DTYPE_WRITER = os.path.join(BUILD_DIR, "tests", "python", "dtype_writer")

NORMALIZE = "to_tensor,normalize(0.1307,0.3081)"
MNIST_COUNT = 1000
MNIST_SEED = 7

_names = [0]


def unique_name(tag):
    _names[0] += 1
    return "pytest-%s-%d-%d" % (tag, os.getpid(), _names[0])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A small synthetic MNIST (IDX files), identical on every run."""
    out = tmp_path_factory.mktemp("mnist")
    subprocess.run(
        [MAKE_MNIST, "--out", str(out), "--count", str(MNIST_COUNT), "--seed", str(MNIST_SEED)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return str(out)


def read_idx(mnist_dir, split="train"):
    """(images uint8 [N,28,28], labels int64 [N]) straight from the IDX files."""
    import numpy as np

    with open(os.path.join(mnist_dir, split + "-images-idx3-ubyte"), "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h, w)
    with open(os.path.join(mnist_dir, split + "-labels-idx1-ubyte"), "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    return images, labels


class Proc:
    """A child process that is killed at the end of the test."""

    def __init__(self, args, **kwargs):
        self.args = args
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        self.p.wait(10)

    def stderr(self):
        try:
            _, err = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return (err or b"").decode("utf-8", "replace")


def segment_of(args):
    """The /dev/shm segment name a producer started with `args` creates."""
    if "--endpoint" not in args:
        return None
    scheme, _, rest = args[args.index("--endpoint") + 1].partition("://")
    if scheme == "shm":
        return rest
    if "--shm-name" in args:
        return args[args.index("--shm-name") + 1]
    return "datafeed-grpc-" + rest.rpartition(":")[2]


@pytest.fixture
def spawn():
    """spawn(args) starts a process; after the test it is killed and the
    shared-memory segment it served is removed (a killed producer leaves
    it behind)."""
    procs = []

    def start(args, **kwargs):
        proc = Proc([str(a) for a in args], **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.p.poll() is None:
            proc.p.kill()
        try:
            proc.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        name = segment_of(proc.args)
        if name:
            try:
                os.unlink("/dev/shm/datafeed." + name)
            except FileNotFoundError:
                pass


def producer_args(mnist_dir, endpoint, *extra, pipeline=NORMALIZE, batch_size=100, epochs=1, threads=2):
    return [
        PRODUCER,
        "--mnist", mnist_dir,
        "--endpoint", endpoint,
        "--pipeline", pipeline,
        "--batch-size", batch_size,
        "--epochs", epochs,
        "--threads", threads,
        "--quiet",
        *extra,
    ]


def shm_exists(name):
    return os.path.exists("/dev/shm/datafeed." + name)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def run_python(code, env_extra=None, timeout=60):
    """Runs `code` in a fresh interpreter (this one) that can import datafeed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
