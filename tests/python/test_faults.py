"""Failures are Python exceptions with the library's message, never hangs."""

import signal
import threading
import time

import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import DTYPE_WRITER, free_port, producer_args, unique_name, wait_for


def drain_until_error(loader, limit_s):
    """Iterates until an exception; fails the test if none comes in time."""
    start = time.monotonic()
    with pytest.raises(datafeed.Error) as info:
        for _ in loader:
            assert time.monotonic() - start < limit_s, "still getting batches"
    return info.value, time.monotonic() - start


@pytest.mark.parametrize("scheme", ["shm", "grpc"])
def test_killed_producer_raises_unavailable(mnist_dir, spawn, scheme):
    if scheme == "shm":
        endpoint = "shm://" + unique_name("kill")
    else:
        endpoint = "grpc://127.0.0.1:%d" % free_port()
    producer = spawn(producer_args(mnist_dir, endpoint, epochs=0))
    # timeout well above what detection takes: a hang would fail on it.
    with datafeed.Loader(endpoint, connect_timeout=20, timeout=30, split_epochs=False) as loader:
        image, label = next(loader)
        assert image.shape[0] == 100
        producer.kill(signal.SIGKILL)
        err, took = drain_until_error(loader, limit_s=15)
        assert isinstance(err, datafeed.Unavailable), repr(err)
        assert isinstance(err, ConnectionError)
        assert took < 10, "the dead producer was noticed after %.1f s" % took
        assert err.code_name == "Unavailable"
        # The library's message names the endpoint.
        assert endpoint.split("://")[1].split(":")[0] in str(err)
        # The stream stays ended: the same error again, at once.
        start = time.monotonic()
        with pytest.raises(datafeed.Unavailable):
            next(loader)
        assert time.monotonic() - start < 1


def test_killed_producer_with_prefetch_0(mnist_dir, spawn):
    endpoint = "shm://" + unique_name("kill0")
    producer = spawn(producer_args(mnist_dir, endpoint, epochs=0))
    with datafeed.Loader(endpoint, prefetch=0, connect_timeout=20, timeout=30, split_epochs=False) as loader:
        next(loader)
        producer.kill(signal.SIGKILL)
        err, took = drain_until_error(loader, limit_s=15)
        assert isinstance(err, datafeed.Unavailable), repr(err)
        assert "died" in str(err)


def test_no_producer_is_not_found():
    start = time.monotonic()
    with pytest.raises(datafeed.NotFound) as info:
        datafeed.Loader("shm://" + unique_name("nobody"), connect_timeout=0)
    assert time.monotonic() - start < 2
    assert "no producer" in str(info.value)


def test_connect_timeout_is_honoured():
    start = time.monotonic()
    with pytest.raises(datafeed.NotFound) as info:
        datafeed.Loader("shm://" + unique_name("nobody"), connect_timeout=1.2)
    took = time.monotonic() - start
    assert 1.1 < took < 3, took
    assert "1.2 s" in str(info.value)


def test_bad_endpoint_and_option_are_invalid_argument():
    with pytest.raises(datafeed.InvalidArgument):
        datafeed.Loader("ftp://nowhere")
    with pytest.raises(datafeed.InvalidArgument) as info:
        datafeed.Loader("shm://x", bogus_option=1)
    assert "bogus_option" in str(info.value) and "prefetch" in str(info.value)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
        datafeed.Loader("shm://x", prefetch=-1)


def test_timeout_then_stream_goes_on(spawn):
    # A producer that publishes one batch, then says nothing for a while.
    name = unique_name("quiet")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 1, "--hold-s", 2])
    with datafeed.Loader("shm://" + name, connect_timeout=20, timeout=0.4) as loader:
        next(loader)
        start = time.monotonic()
        with pytest.raises(datafeed.Timeout) as info:
            next(loader)
        took = time.monotonic() - start
        assert 0.35 < took < 1.5, took
        assert isinstance(info.value, TimeoutError)
        assert "is the producer running" in str(info.value)
        loader.timeout = 10
        assert list(loader) == []  # then the producer closes: end of stream


def test_close_wakes_a_blocked_iteration(spawn):
    name = unique_name("wake")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 0, "--hold-s", 30])
    loader = datafeed.Loader("shm://" + name, connect_timeout=20)
    result = {}

    def consume():
        try:
            next(loader)
        except BaseException as e:  # noqa: B902 - the test inspects it
            result["error"] = e

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    loader.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - start < 2
    assert isinstance(result.get("error"), datafeed.Cancelled), result
    with pytest.raises(datafeed.Cancelled):
        next(loader)
    loader.close()  # idempotent
