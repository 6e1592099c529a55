#!/usr/bin/env python3
"""Chaos test of the delivery contract (transport/include/datafeed/transport/delivery.h).

A producer (datafeed-producer --state-dir --with-index) serves several epochs
of a small dataset to trainers: datafeed-consume processes that checkpoint
every few batches (--checkpoint, --checkpoint-every) and record the sample
indices of every batch they consume (--record). Some read shared memory
(auto:// on the producer's host), some read the gRPC stream through a TCP
proxy. Then, at random (seed printed), this script

  * kills a trainer with SIGKILL and restarts it from its last checkpoint,
  * kills the producer with SIGKILL and restarts it with the same flags,
  * cuts every connection through the proxy,

and at the end checks that, for every epoch, the sample indices the trainers
consumed after their last restores add up to the dataset exactly: no index
missing, none twice.

Bounded: events stop after --duration seconds, everything is torn down after
--deadline seconds whatever happens. Network traffic stays on 127.0.0.1.

    python3 tests/chaos/chaos.py --build build --seed 7 --duration 90 --min-events 50
"""

import argparse
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    print("chaos: %s" % msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP proxy on 127.0.0.1 that can cut every connection at once."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.cuts = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 1.0)
                if self.stopping:
                    break
                for s in readable:
                    data = s.recv(1 << 20)
                    if not data:
                        raise OSError("closed")
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket cut() closed
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self.cuts += 1
        return len(conns)

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.cut()


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = tempfile.mkdtemp(prefix="datafeed-chaos-")
        self.bin = os.path.abspath(args.build)
        self.port = free_port()
        self.producer = None
        self.producer_restarts = 0
        self.trainers = {}
        self.events = {"kill_trainer": 0, "kill_producer": 0, "cut": 0}
        self.failures = []

    # -- processes --------------------------------------------------------

    def producer_cmd(self):
        a = self.args
        return [
            os.path.join(self.bin, "producer", "datafeed-producer"),
            "--mnist", os.path.join(self.work, "mnist"),
            "--endpoint", "auto://127.0.0.1:%d" % self.port,
            "--batch-size", str(a.batch), "--epochs", str(a.epochs), "--threads", "1",
            "--shuffle", "--seed", str(a.seed), "--with-index", "--pipeline", "to_tensor",
            "--state-dir", os.path.join(self.work, "state"), "--consumer-timeout", "8",
            "--slots", "6", "--linger-ms", "500", "--finish-grace-ms", "3000", "--quiet",
        ]

    def start_producer(self):
        logf = open(os.path.join(self.work, "producer.log"), "ab")
        self.producer = subprocess.Popen(self.producer_cmd(), stdout=logf, stderr=logf, env=dict(os.environ, DATAFEED_DEBUG_LEDGER="1") if self.args.debug else None)
        logf.close()

    def trainer_cmd(self, name):
        t = self.trainers[name]
        if t["kind"] == "grpc":
            endpoint = "grpc://127.0.0.1:%d" % self.proxy.port
        else:
            endpoint = "auto://127.0.0.1:%d" % self.port
        return [
            os.path.join(self.bin, "consumer", "datafeed-consume"),
            "--endpoint", endpoint, "--reconnect",
            "--checkpoint", t["checkpoint"], "--checkpoint-every", str(t["every"]),
            "--record", t["record"], "--step-ms", str(t["step_ms"]),
            "--connect-timeout-ms", "60000", "--timeout-ms", "120000", "--report-s", "0",
        ]

    def start_trainer(self, name):
        t = self.trainers[name]
        logf = open(t["log"], "ab")
        env = dict(os.environ)
        env.pop("DATAFEED_TRANSPORT", None)
        env.pop("DATAFEED_ENDPOINT", None)
        t["proc"] = subprocess.Popen(self.trainer_cmd(name), stdout=logf, stderr=logf, env=env)
        logf.close()

    def check_exits(self):
        """A trainer that exited on its own must have finished cleanly."""
        for name, t in self.trainers.items():
            p = t["proc"]
            if p is not None and p.poll() is not None and not t["done"]:
                if p.returncode == 0:
                    t["done"] = True
                elif self.finished_before_restore(t):
                    # The documented recovery: the producer (restarted on its
                    # journal) serves what the checkpoint rolled back.
                    t["restarts"] += 1
                    self.start_trainer(name)
                else:
                    self.failures.append("%s exited with %s (log %s)" % (name, p.returncode, t["log"]))
                    t["done"] = True
        if self.producer is not None and self.producer.poll() is not None:
            code = self.producer.returncode
            if code not in (0, -9):
                self.failures.append("the producer exited with %s (log %s/producer.log)" % (code, self.work))
            self.producer = None

    @staticmethod
    def finished_before_restore(t):
        with open(t["log"], "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2000))
            return b"finished its run and closed its stream" in f.read()

    # -- the run ----------------------------------------------------------

    def run(self):
        a = self.args
        log("seed %d, work dir %s (kept on failure)" % (a.seed, self.work))
        subprocess.run(
            [os.path.join(self.bin, "producer", "datafeed-make-mnist"), "--out",
             os.path.join(self.work, "mnist"), "--count", str(a.samples)],
            check=True, stdout=subprocess.DEVNULL)
        self.start_producer()
        self.proxy = Proxy(self.port)
        kinds = ["shm"] * a.shm_trainers + ["grpc"] * a.grpc_trainers
        for i, kind in enumerate(kinds):
            name = "%s%d" % (kind, i)
            self.trainers[name] = {
                "kind": kind,
                "checkpoint": os.path.join(self.work, name + ".ckpt"),
                "record": os.path.join(self.work, name + ".rec"),
                "log": os.path.join(self.work, name + ".log"),
                "every": self.rng.randint(2, 6),
                "step_ms": self.rng.randint(a.step_ms // 2, a.step_ms * 3 // 2),
                "proc": None, "done": False, "restarts": 0,
            }
            self.start_trainer(name)
        start = time.monotonic()
        deadline = start + a.deadline
        # Inject events while the trainers work.
        while time.monotonic() - start < a.duration:
            time.sleep(self.rng.uniform(0.5 * a.interval, 1.5 * a.interval))
            self.check_exits()
            if all(t["done"] for t in self.trainers.values()):
                break
            r = self.rng.random()
            live = [n for n, t in self.trainers.items() if not t["done"]]
            if r < 0.6 and live:
                name = self.rng.choice(live)
                t = self.trainers[name]
                t["proc"].send_signal(signal.SIGKILL)
                t["proc"].wait()
                t["restarts"] += 1
                self.events["kill_trainer"] += 1
                time.sleep(self.rng.uniform(0, 0.3))
                self.start_trainer(name)
            elif r < 0.8:
                if self.producer is not None:
                    self.producer.send_signal(signal.SIGKILL)
                    self.producer.wait()
                self.events["kill_producer"] += 1
                time.sleep(self.rng.uniform(0.05, 0.8))
                self.producer_restarts += 1
                self.start_producer()
            else:
                self.proxy.cut()
                self.events["cut"] += 1
        log("events: %s (in %.0f s)" % (self.events, time.monotonic() - start))
        # Let the run finish: trainers that crashed are restarted from their
        # checkpoints; a producer that finished the run is restarted when a
        # trainer still needs it (its journal says what remains).
        while time.monotonic() < deadline:
            self.check_exits()
            if all(t["done"] for t in self.trainers.values()):
                break
            if self.producer is None:
                self.producer_restarts += 1
                self.start_producer()
            time.sleep(0.2)
        else:
            self.failures.append("the run did not finish within %d s" % a.deadline)

    def verify(self):
        a = self.args
        per_epoch = {}
        lines = 0
        for name, t in self.trainers.items():
            if not os.path.exists(t["record"]):
                continue
            with open(t["record"]) as f:
                for line in f:
                    if not line.endswith("\n"):
                        self.failures.append("%s: a torn record line (the checkpoint protocol failed)" % name)
                        continue
                    fields = line.split()
                    epoch, indices = int(fields[0]), [int(x) for x in fields[2:]]
                    per_epoch.setdefault(epoch, []).extend(indices)
                    lines += 1
        checked = 0
        for epoch in range(a.epochs):
            got = sorted(per_epoch.get(epoch, []))
            checked += len(got)
            if got != list(range(a.samples)):
                seen = set()
                dup = sorted({i for i in got if i in seen or seen.add(i)})
                missing = sorted(set(range(a.samples)) - set(got))
                self.failures.append(
                    "epoch %d: %d indices, %d repeated %s, %d missing %s"
                    % (epoch, len(got), len(dup), dup[:10], len(missing), missing[:10]))
        extra = sorted(set(per_epoch) - set(range(a.epochs)))
        if extra:
            self.failures.append("batches of epochs %s that the run does not have" % extra)
        total_events = sum(self.events.values())
        log("checked %d epochs, %d sample indices in %d batches; %d events (%d trainer kills, %d producer "
            "kills, %d connection cuts), %d producer restarts"
            % (a.epochs, checked, lines, total_events, self.events["kill_trainer"], self.events["kill_producer"],
               self.events["cut"], self.producer_restarts))
        if total_events < a.min_events:
            self.failures.append("only %d events (at least %d wanted): raise --duration" % (total_events, a.min_events))

    def teardown(self):
        for t in self.trainers.values():
            if t["proc"] is not None and t["proc"].poll() is None:
                t["proc"].kill()
                t["proc"].wait()
        if self.producer is not None and self.producer.poll() is None:
            self.producer.kill()
            self.producer.wait()
        if hasattr(self, "proxy"):
            self.proxy.stop()
        # The ring of a producer killed last stays behind: remove ours.
        ring = "/dev/shm/datafeed.datafeed-grpc-%d" % self.port
        if os.path.exists(ring):
            os.unlink(ring)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--samples", type=int, default=600)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--shm-trainers", type=int, default=2)
    p.add_argument("--grpc-trainers", type=int, default=2)
    p.add_argument("--step-ms", type=int, default=80)
    p.add_argument("--interval", type=float, default=0.4, help="mean seconds between events")
    p.add_argument("--duration", type=float, default=60, help="seconds of event injection at most")
    p.add_argument("--deadline", type=float, default=170, help="seconds before everything is torn down")
    p.add_argument("--min-events", type=int, default=50)
    p.add_argument("--debug", action="store_true", help="the producer logs every ledger event")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randint(0, 1 << 30)
    chaos = Chaos(args)
    try:
        chaos.run()
        chaos.verify()
    finally:
        chaos.teardown()
    if chaos.failures:
        for f in chaos.failures:
            log("FAILED: " + f)
        log("reproduce with --seed %d; logs in %s" % (args.seed, chaos.work))
        return 1
    shutil.rmtree(chaos.work, ignore_errors=True)
    log("passed (seed %d)" % args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
