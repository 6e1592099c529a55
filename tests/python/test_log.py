"""The library's log lines reach Python's logging under the "datafeed"
logger (python/datafeed/_log.py over df_set_log_callback)."""

import logging
import os
import socket
import stat
import time

import datafeed
from conftest import free_port, producer_args, unique_name, wait_for


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_library_warning_reaches_logging(mnist_dir, spawn, caplog):
    # An auto:// producer whose shared memory has been made writable by
    # others: the consumer refuses to map it and says so (a warning from
    # transport/src/auto/auto_reader.cc), then reads the gRPC stream.
    port = free_port()
    spawn(producer_args(mnist_dir, "auto://127.0.0.1:%d" % port, epochs=0))
    segment = "/dev/shm/datafeed.datafeed-grpc-%d" % port
    wait_for(lambda: os.path.exists(segment), timeout=30, what=segment)
    # The ring comes before the gRPC port: wait until that listens too.
    wait_for(lambda: _listening(port), timeout=30, what="port %d" % port)
    os.chmod(segment, os.stat(segment).st_mode | stat.S_IWOTH)
    caplog.set_level(logging.INFO, logger="datafeed")
    with datafeed.Loader("auto://127.0.0.1:%d" % port, connect_timeout=20, timeout=20) as loader:
        image, label = next(loader)
        assert loader.transport == "grpc"
    assert image.shape[0] == label.shape[0] == 100
    warnings = [r for r in caplog.records if r.name == "datafeed" and r.levelno == logging.WARNING]
    assert any("not reading the shared memory its handshake named" in r.getMessage() for r in warnings), [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records
    ]


def test_stats_line_is_info_and_says_when_input_bound(mnist_dir, spawn, caplog):
    # A producer that cannot keep up (one thread, four wide blurs) and a
    # loader that does nothing with its batches and logs its stats line
    # every 0.2 s: the line arrives at INFO and, the trainer waiting for
    # nearly every batch, says it is input-bound.
    endpoint = "shm://" + unique_name("log")
    spawn(producer_args(mnist_dir, endpoint, epochs=0, threads=1,
                        pipeline="to_tensor" + ",gaussian_blur(31)" * 4))
    caplog.set_level(logging.INFO, logger="datafeed")
    with datafeed.Loader(endpoint, connect_timeout=20, timeout=20, log_every_s=0.2) as loader:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # passes of one epoch (10 batches) each
            for _ in loader:
                pass
            if any("input-bound" in r.getMessage() for r in caplog.records):
                break
    lines = [r for r in caplog.records if r.name == "datafeed" and r.levelno == logging.INFO]
    assert lines, [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert any("input-bound: the trainer waited" in r.getMessage() and "--threads" in r.getMessage()
               for r in lines), [r.getMessage() for r in lines]
