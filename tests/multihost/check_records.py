"""Checks what the trainers of multihost_test.sh recorded.

usage: check_records.py all|lost DIR DATASET_SIZE BATCH_SIZE EPOCHS

DIR holds t0..t2.rec (datafeed-consume --record: 'epoch batch_index
index...' per batch, the indices from the producers' --with-index) and
t0..t2.json (--json; empty when the trainer ended with an error). Trainers
t0 and t1 are on hosts of their own, t2 on producer 0's host. The producers
are shards 0..2 of 3, unshuffled, so shard s serves samples s, s+3, s+6, ...
and a batch's shard is its first sample index mod 3.
"""
import json
import os
import sys

NUM_SHARDS = 3
PRODUCER_ADDR = ["10.77.0.10:5000", "10.77.0.11:5000", "10.77.0.12:5000"]
TRAINERS = ["trainer-a", "trainer-b", "trainer beside producer 0"]


def fail(msg):
    print("check_records: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def expected_indices(shard, batch_index, dataset, batch):
    shard_samples = dataset // NUM_SHARDS + (shard < dataset % NUM_SHARDS)
    begin = batch_index * batch
    end = min(begin + batch, shard_samples)
    return [shard + k * NUM_SHARDS for k in range(begin, end)]


def main():
    mode, d = sys.argv[1], sys.argv[2]
    dataset, batch, epochs = (int(a) for a in sys.argv[3:6])
    shard_samples = [dataset // NUM_SHARDS + (s < dataset % NUM_SHARDS) for s in range(NUM_SHARDS)]
    batches_per_epoch = [(n + batch - 1) // batch for n in shard_samples]
    seen = {}  # (shard, epoch, batch_index) -> trainer
    per_trainer = []
    for t in range(3):
        lines = open(os.path.join(d, "t%d.rec" % t)).read().splitlines()
        per_trainer.append(len(lines))
        for n, line in enumerate(lines):
            f = [int(x) for x in line.split()]
            epoch, bi, idx = f[0], f[1], f[2:]
            if not idx:
                fail("%s t%d.rec line %d has no sample indices (producers need --with-index)" % (d, t, n + 1))
            shard = idx[0] % NUM_SHARDS
            want = expected_indices(shard, bi, dataset, batch)
            if idx != want:
                fail("%s: batch (shard %d, epoch %d, index %d) holds samples %s..., the shard's batch is %s..."
                     % (TRAINERS[t], shard, epoch, bi, idx[:4], want[:4]))
            key = (shard, epoch, bi)
            if key in seen:
                fail("batch (shard %d, epoch %d, index %d) reached %s and %s" % (key + (seen[key], TRAINERS[t])))
            seen[key] = TRAINERS[t]
    by_shard = [sum(1 for k in seen if k[0] == s) for s in range(NUM_SHARDS)]
    for s in range(NUM_SHARDS):
        want_keys = {(s, e, b) for e in range(epochs) for b in range(batches_per_epoch[s])}
        got_keys = {k for k in seen if k[0] == s}
        if got_keys - want_keys:
            fail("shard %d: batches outside the run: %s" % (s, sorted(got_keys - want_keys)[:5]))
        if mode == "all" or s != 1:
            if got_keys != want_keys:
                fail("shard %d: %d of %d batches arrived; missing %s"
                     % (s, len(got_keys), len(want_keys), sorted(want_keys - got_keys)[:5]))
        elif not 0 < len(got_keys) < len(want_keys):
            fail("shard 1 (the lost host): %d of %d batches arrived; the kill was meant to come mid-run"
                 % (len(got_keys), len(want_keys)))
    if mode == "all":
        # Each epoch's samples, over all trainers, are the dataset once.
        for e in range(epochs):
            samples = sorted(i for (s, ep, b) in seen for i in expected_indices(s, b, dataset, batch) if ep == e)
            if samples != list(range(dataset)):
                fail("epoch %d: the trainers together saw %d samples, not the dataset's %d once"
                     % (e, len(samples), dataset))
        for t in range(3):
            text = open(os.path.join(d, "t%d.json" % t)).read().strip()
            if not text:
                fail("%s printed no JSON summary" % TRAINERS[t])
            j = json.loads(text)
            links = j.get("producers", [])
            if len(links) != 3:
                fail("%s lists %d producers, want 3: %s" % (TRAINERS[t], len(links), links))
            if j["batches"] != per_trainer[t] or sum(l["batches"] for l in links) != per_trainer[t]:
                fail("%s: JSON says %d batches (%s by producer), its record has %d"
                     % (TRAINERS[t], j["batches"], [l["batches"] for l in links], per_trainer[t]))
            for p, addr in enumerate(PRODUCER_ADDR):
                link = [l for l in links if addr in l["endpoint"]]
                if len(link) != 1:
                    fail("%s: no single producer entry for %s: %s" % (TRAINERS[t], addr, links))
                link = link[0]
                want = "shm" if (t == 2 and p == 0) else "grpc"
                if link["transport"] != want or link["state"] != "ended":
                    fail("%s read %s over %s (%s), want %s, ended"
                         % (TRAINERS[t], addr, link["transport"], link["state"], want))
                if want == "shm" and link["batches"] == 0:
                    fail("%s was given no batch of its own host's producer over shared memory" % TRAINERS[t])
            print("check_records: %s: %d batches, %s" % (
                TRAINERS[t], per_trainer[t],
                ", ".join("%s %s %d" % (l["endpoint"], l["transport"], l["batches"]) for l in links)))
    print("check_records: %s: %d batches, each once (by shard: %s of %s)"
          % (mode, len(seen), by_shard, [epochs * b for b in batches_per_epoch]))


if __name__ == "__main__":
    main()
