#!/usr/bin/python3
"""datafeed.Writer throughput against a seed-style Python gRPC service and
memcpy, in the same run.

Each case runs a publisher process and reads its batches as torch tensors
in this process: MNIST-size batches (image float32 [B,1,28,28], label
int64 [B]; B = 8192 is 25.8 MB), counted from the first batch received to
the last (steady state; `--warmup` batches first are not counted).

  datafeed-shm    datafeed.Writer("shm://...") -> datafeed.Loader
  datafeed-grpc   datafeed.Writer("grpc://127.0.0.1:P") -> datafeed.Loader
  seed-grpcio     what a Python team writes first: a grpcio server streaming
                  each batch as pickled numpy arrays (one bytes message per
                  batch), a client unpickling them into tensors
  memcpy          the physical limit: copying one batch's bytes in memory
                  (torch copy_ of the same tensors), this process

The publisher side's own rate is printed too: time inside publish() (it
includes waiting for a free slot: backpressure), for the seed service the
time to pickle each batch (gRPC's sending runs on its own threads).

  PYTHONPATH=build/python /usr/bin/python3 bench/python_writer_bench.py [--batches 40] [--batch 8192] [--json]
"""

import argparse
import json
import os
import pickle
import socket
import subprocess
import sys
import time

SEED_METHOD = "/seedfeed.Feed/Stream"


def make_batch(b, k):
    import torch

    image = torch.full((b, 1, 28, 28), float(k), dtype=torch.float32)
    label = torch.arange(b, dtype=torch.int64) + k
    return image, label


def batch_bytes(b):
    return b * 28 * 28 * 4 + b * 8


# -- publishers (child processes) ------------------------------------------------


def publish_datafeed(endpoint, n, b, warmup):
    import datafeed

    batches = [make_batch(b, k) for k in range(2)]  # made before timing
    spent = 0.0
    with datafeed.Writer(endpoint, linger=60.0, timeout=120.0) as w:
        for k in range(n):
            x, y = batches[k % 2]
            t0 = time.perf_counter()
            w.publish(image=x, label=y)  # the first one opens the endpoint
            if k >= warmup:
                spent += time.perf_counter() - t0
    print(json.dumps({"publish_s": spent, "batches": n - warmup}), flush=True)


def publish_seed(port, n, b, warmup):
    from concurrent import futures

    import grpc

    batches = [make_batch(b, k) for k in range(2)]
    spent = [0.0]
    done = futures.Future()

    def stream(request, context):
        for k in range(n):
            x, y = batches[k % 2]
            t0 = time.perf_counter()
            msg = pickle.dumps({"image": x.numpy(), "label": y.numpy()}, protocol=5)
            if k >= warmup:
                spent[0] += time.perf_counter() - t0
            yield msg
        done.set_result(True)

    handler = grpc.method_handlers_generic_handler(
        "seedfeed.Feed",
        {"Stream": grpc.unary_stream_rpc_method_handler(stream, lambda b: b, lambda b: b)},
    )
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=opts)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("ready", flush=True)
    done.result(timeout=600)
    server.stop(grace=5).wait()
    print(json.dumps({"publish_s": spent[0], "batches": n - warmup}), flush=True)


# -- readers (this process) ---------------------------------------------------------


def read_datafeed(endpoint, n, warmup):
    import datafeed

    times = []
    with datafeed.Loader(endpoint, timeout=120, connect_timeout=60, split_epochs=False) as loader:
        for image, label in loader:
            times.append(time.perf_counter())
            assert image.shape[1:] == (1, 28, 28) and label.dtype.is_floating_point is False
    assert len(times) == n, "read %d of %d batches" % (len(times), n)
    return times[warmup:]


def read_seed(port, n, warmup):
    import grpc
    import torch

    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=opts)
    call = channel.unary_stream(SEED_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    times = []
    for msg in call(b""):
        d = pickle.loads(msg)
        image, label = torch.from_numpy(d["image"]), torch.from_numpy(d["label"])
        times.append(time.perf_counter())
        assert image.shape[1:] == (1, 28, 28)
    channel.close()
    assert len(times) == n, "read %d of %d batches" % (len(times), n)
    return times[warmup:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(name, args):
    n, b, warmup = args.batches, args.batch, args.warmup
    me = [sys.executable, os.path.abspath(__file__)]
    if name == "seed-grpcio":
        port = free_port()
        child = subprocess.Popen(
            me + ["--role", "seed", "--target", str(port), "--batches", str(n), "--batch", str(b), "--warmup", str(warmup)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        times = read_seed(port, n, warmup)
    else:
        target = ("shm://pybench-%d" % os.getpid()) if name == "datafeed-shm" else "grpc://127.0.0.1:%d" % free_port()
        child = subprocess.Popen(
            me + ["--role", "datafeed", "--target", target, "--batches", str(n), "--batch", str(b), "--warmup", str(warmup)],
            stdout=subprocess.PIPE,
            text=True,
        )
        times = read_datafeed(target, n, warmup)
    out, _ = child.communicate(timeout=300)
    if child.returncode != 0:
        raise SystemExit("%s publisher failed (status %d)" % (name, child.returncode))
    pub = json.loads(out.strip().splitlines()[-1])
    span = times[-1] - times[0]
    counted = len(times) - 1
    mb = batch_bytes(b) / 1e6
    return {
        "case": name,
        "batches_per_s": counted / span,
        "MB_per_s": counted * mb / span,
        "publisher_MB_per_s": pub["batches"] * mb / pub["publish_s"] if pub["publish_s"] > 0 else float("inf"),
    }


def memcpy_case(args):
    src = make_batch(args.batch, 1)
    dst = make_batch(args.batch, 2)
    for _ in range(3):
        dst[0].copy_(src[0])
    reps = max(10, args.batches)
    t0 = time.perf_counter()
    for _ in range(reps):
        dst[0].copy_(src[0])
        dst[1].copy_(src[1])
    span = time.perf_counter() - t0
    mb = batch_bytes(args.batch) / 1e6
    return {"case": "memcpy", "batches_per_s": reps / span, "MB_per_s": reps * mb / span}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=40, help="batches per case (default 40)")
    p.add_argument("--batch", type=int, default=8192, help="samples per batch (default 8192)")
    p.add_argument("--warmup", type=int, default=3, help="batches not counted at the start (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--role", choices=["datafeed", "seed"], help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.batches <= args.warmup + 1 or args.batch < 1 or args.warmup < 0:
        p.error("--batches must exceed --warmup + 1, --batch >= 1, --warmup >= 0")
    if args.role == "datafeed":
        return publish_datafeed(args.target, args.batches, args.batch, args.warmup)
    if args.role == "seed":
        return publish_seed(int(args.target), args.batches, args.batch, args.warmup)

    import torch

    torch.set_num_threads(1)  # one copy thread, as in the publishers
    results = [memcpy_case(args)]
    for name in ("datafeed-shm", "datafeed-grpc", "seed-grpcio"):
        results.append(run_case(name, args))
    by = {r["case"]: r for r in results}
    seed = by["seed-grpcio"]["MB_per_s"]
    mem = by["memcpy"]["MB_per_s"]
    for r in results:
        r["vs_seed"] = r["MB_per_s"] / seed
        r["vs_memcpy"] = r["MB_per_s"] / mem
    if args.json:
        print(json.dumps({"batch": args.batch, "batch_MB": batch_bytes(args.batch) / 1e6, "results": results}))
        return
    print("batches of %d MNIST samples (%.1f MB), %d per case" % (args.batch, batch_bytes(args.batch) / 1e6, args.batches))
    print("%-14s %10s %10s %12s %9s %10s" % ("case", "batches/s", "MB/s", "publisher", "vs seed", "vs memcpy"))
    for r in results:
        pub = r.get("publisher_MB_per_s")
        print(
            "%-14s %10.1f %10.0f %12s %8.2fx %9.2fx"
            % (r["case"], r["batches_per_s"], r["MB_per_s"], "%.0f MB/s" % pub if pub else "-", r["vs_seed"], r["vs_memcpy"])
        )


if __name__ == "__main__":
    main()
