"""datafeed.serve() starts datafeed-producer as a child and stops it."""

import os
import signal
import subprocess
import sys
import time

import pytest

import datafeed
from datafeed.serving import _dataset_flags
from conftest import MNIST_COUNT, run_python, shm_exists, wait_for


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_serve_feeds_a_loader_and_stops(mnist_dir):
    torch = pytest.importorskip("torch")
    with datafeed.serve(
        mnist_dir, pipeline="to_tensor,normalize(0.1307,0.3081)", batch_size=200, threads=2, epochs=0
    ) as producer:
        assert producer.running()
        assert producer.endpoint.startswith("shm://datafeed-py-")
        name = producer.endpoint[len("shm://") :]
        assert shm_exists(name)  # serve() waited for it
        with producer.loader(timeout=20) as loader:
            image, label = next(loader)
            assert image.shape == (200, 1, 28, 28) and label.dtype == torch.int64
        start = time.monotonic()
        status = producer.stop()
        assert time.monotonic() - start < 5
    assert status == 0, producer.log_tail()
    assert not producer.running()
    assert not shm_exists(name)
    assert "serving " + producer.endpoint in producer.log_tail()


def test_serve_reports_a_bad_pipeline(mnist_dir):
    with pytest.raises(datafeed.ProducerError) as info:
        datafeed.serve(mnist_dir, pipeline="to_tensor,blurr(3)")
    assert "blurr" in str(info.value)
    assert "exited with status" in str(info.value)


def test_serve_one_epoch_then_end_of_stream(mnist_dir):
    pytest.importorskip("torch")
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=250, threads=1, epochs=1) as p:
        with datafeed.Loader(p.endpoint, timeout=20) as loader:
            assert sum(image.shape[0] for image, _ in loader) == MNIST_COUNT
        assert p.wait(10) == 0


def test_producers_are_stopped_at_exit(mnist_dir):
    # The child process serves an endless stream and exits without stop().
    r = run_python(
        "import datafeed\n"
        "p = datafeed.serve(%r, batch_size=100, threads=1, epochs=0)\n"
        "print(p.pid, p.endpoint)\n" % mnist_dir
    )
    assert r.returncode == 0, r.stderr
    pid, endpoint = r.stdout.split()
    wait_for(lambda: not pid_alive(int(pid)), timeout=10, what="the producer to stop")
    assert not shm_exists(endpoint[len("shm://") :])


def test_producer_stops_when_the_trainer_is_killed(mnist_dir):
    # SIGKILL runs no atexit handler; the kernel's parent-death signal does it.
    code = (
        "import datafeed, sys, time\n"
        "p = datafeed.serve(%r, batch_size=100, threads=1, epochs=0)\n"
        "print(p.pid, p.endpoint, flush=True)\n"
        "time.sleep(60)\n" % mnist_dir
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid, endpoint = child.stdout.readline().split()
        assert pid_alive(int(pid))
    finally:
        child.kill()
        child.wait()
    wait_for(lambda: not pid_alive(int(pid)), timeout=10, what="the orphaned producer to stop")
    wait_for(lambda: not shm_exists(endpoint[len("shm://") :]), timeout=5, what="the segment to go")


def test_serve_stop_escalates_to_sigkill(mnist_dir, tmp_path):
    # A "producer" that ignores SIGTERM.
    fake = tmp_path / "stubborn"
    fake.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.05; done\n")
    fake.chmod(0o755)
    p = datafeed.serve(mnist_dir, producer=str(fake), wait=False, stop_timeout=0.5)
    time.sleep(0.2)
    start = time.monotonic()
    assert p.stop() == -signal.SIGKILL
    assert time.monotonic() - start < 3


def test_dataset_kinds(tmp_path, mnist_dir):
    assert _dataset_flags(mnist_dir) == ["--mnist", mnist_dir]
    t10k = tmp_path / "t10k"
    t10k.mkdir()
    (t10k / "t10k-images-idx3-ubyte").write_bytes(b"")
    assert _dataset_flags(str(t10k)) == ["--mnist", str(t10k), "--split", "t10k"]
    folder = tmp_path / "folder"
    (folder / "cat").mkdir(parents=True)
    assert _dataset_flags(str(folder)) == ["--image-folder", str(folder)]
    with pytest.raises(datafeed.InvalidArgument):
        _dataset_flags(str(tmp_path / "missing"))


def test_producer_binary_is_in_the_package():
    path = datafeed.producer_path()
    assert os.access(path, os.X_OK)
    assert path.endswith(os.path.join("datafeed", "bin", "datafeed-producer")) or os.environ.get(
        "DATAFEED_PRODUCER"
    )
