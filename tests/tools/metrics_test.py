"""datafeed-producer --metrics-port, end to end: the real producer serves
/metrics, a plain HTTP GET reads it, every line is checked against the
Prometheus text format, and the counters move once a consumer read batches.

Usage: metrics_test.py BUILD_DIR
"""

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

build = sys.argv[1]
producer = os.path.join(build, "producer", "datafeed-producer")
consume = os.path.join(build, "consumer", "datafeed-consume")
make_mnist = os.path.join(build, "producer", "datafeed-make-mnist")

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
SAMPLE = re.compile(r"^(" + NAME + r")(\{(" + LABEL + r"(," + LABEL + r")*)\})? (\S+)$")
# The metrics a dashboard relies on, with their types.
EXPECTED = {
    "datafeed_producer_samples_total": "counter",
    "datafeed_producer_batches_total": "counter",
    "datafeed_producer_stage_seconds_total": "counter",
    "datafeed_producer_blocked_seconds_total": "counter",
    "datafeed_producer_bad_samples_total": "counter",
    "datafeed_producer_ring_slots": "gauge",
    "datafeed_producer_ring_slots_in_use": "gauge",
    "datafeed_producer_consumers": "gauge",
    "datafeed_producer_leases_lost_total": "counter",
    "datafeed_producer_batches_redelivered_total": "counter",
    "datafeed_producer_batches_delivered_total": "counter",
}


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            fail("%s: HTTP %d" % (url, r.status))
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain"):
            fail("%s: Content-Type %r, want text/plain" % (url, ctype))
        return r.read().decode("utf-8")


def parse(text):
    """{(name, labels): value} after checking every line; {name: type}."""
    types, helps, samples = {}, set(), {}
    if not text.endswith("\n"):
        fail("the exposition does not end with a newline")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            if not re.fullmatch(NAME, name) or len(line.split(" ", 3)) < 4:
                fail("bad HELP line: %r" % line)
            helps.add(name)
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                fail("bad TYPE line: %r" % line)
            if parts[2] in types:
                fail("two TYPE lines for %s" % parts[2])
            types[parts[2]] = parts[3]
        elif line.startswith("#") or not line:
            fail("unexpected line: %r" % line)
        else:
            m = SAMPLE.match(line)
            if not m:
                fail("not a sample line: %r" % line)
            name, labels, value = m.group(1), m.group(3) or "", m.group(5)
            try:
                v = float(value)
            except ValueError:
                fail("not a number: %r" % line)
            if math.isnan(v) or v < 0:
                fail("negative or NaN: %r" % line)
            if name not in types:
                fail("sample before its TYPE line: %r" % line)
            if types[name] == "counter" and not name.endswith("_total"):
                fail("counter %s does not end in _total" % name)
            if not name.startswith("datafeed_"):
                fail("%s lacks the datafeed_ prefix" % name)
            samples[(name, labels)] = v
    for name in types:
        if name not in helps:
            fail("%s has no HELP line" % name)
    for name, t in EXPECTED.items():
        if types.get(name) != t:
            fail("%s: want a %s, got %r" % (name, t, types.get(name)))
    return samples


def main():
    work = tempfile.mkdtemp()
    subprocess.run([make_mnist, "--out", work + "/mnist", "--count", "2000", "--seed", "5"], check=True,
                   stdout=subprocess.DEVNULL)
    name = "metrics-%d" % os.getpid()
    log = open(work + "/producer.log", "w+")
    # Endless, so the counters can only be read while it serves.
    p = subprocess.Popen([producer, "--mnist", work + "/mnist", "--endpoint", "shm://" + name, "--batch-size", "200",
                          "--epochs", "0", "--threads", "1", "--slots", "3", "--quiet", "--metrics-port", "0"],
                         stderr=log)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            if p.poll() is not None:
                log.seek(0)
                fail("the producer ended: " + log.read())
            if time.monotonic() > deadline:
                log.seek(0)
                fail("the producer never said its metrics address: " + log.read())
            log.seek(0)
            m = re.search(r"^datafeed-producer: metrics on (http://127\.0\.0\.1:(\d+)/metrics)$", log.read(), re.M)
            url = m.group(1) if m else None
            time.sleep(0.05)
        if int(re.search(r":(\d+)/", url).group(1)) == 0:
            fail("the producer printed port 0: " + url)

        before = parse(scrape(url))
        print("before: %d samples" % len(before))
        if before[("datafeed_producer_ring_slots", "")] != 3:
            fail("ring_slots: want 3 (--slots 3), got %s" % before[("datafeed_producer_ring_slots", "")])
        if before[("datafeed_producer_consumers", 'transport="shm"')] != 0:
            fail("a consumer is counted before any connected")
        out = subprocess.run([consume, "--endpoint", "shm://" + name, "--batches", "25", "--json"],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        print("consumer: " + out.strip())
        after = parse(scrape(url))
        for key in [("datafeed_producer_batches_total", ""), ("datafeed_producer_samples_total", ""),
                    ("datafeed_producer_stage_seconds_total", 'stage="transform"'),
                    ("datafeed_producer_stage_seconds_total", 'stage="publish"'),
                    ("datafeed_producer_batches_delivered_total", "")]:
            if not after[key] > before[key]:
                fail("%s%s did not move: %s -> %s" % (key[0], "{%s}" % key[1] if key[1] else "", before[key],
                                                      after[key]))
        # 25 read, at most the 3 slots more made ahead of it.
        batches = after[("datafeed_producer_batches_total", "")]
        if not 25 <= batches:
            fail("batches_total %s after a consumer read 25" % batches)
        if after[("datafeed_producer_samples_total", "")] != 200 * batches:
            fail("samples_total is not 200 x batches_total")
        # A second producer asking for the same port is refused, naming the flag
        # (not bound beside the first one, taking half of the scrapes).
        port = re.search(r":(\d+)/", url).group(1)
        second = subprocess.run([producer, "--mnist", work + "/mnist", "--endpoint", "shm://" + name + "-2",
                                 "--epochs", "0", "--quiet", "--metrics-port", port],
                                capture_output=True, text=True, timeout=60)
        if second.returncode != 1 or "cannot listen for metrics on 127.0.0.1:" + port not in second.stderr \
                or "--metrics-port" not in second.stderr:
            fail("a second producer on port %s: exit %d, %s" % (port, second.returncode, second.stderr))
        for key in sorted(after):
            print("  %s%s %g" % (key[0], "{%s}" % key[1] if key[1] else "", after[key]))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
        try:
            os.unlink("/dev/shm/datafeed." + name)
        except FileNotFoundError:
            pass
    print("OK")


main()
