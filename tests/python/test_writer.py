"""datafeed.Writer: a Python process publishes a torch Dataset; a Loader in
another process reads every batch exactly, over shared memory and gRPC."""

import json
import os
import subprocess
import sys

import pytest

import datafeed
from conftest import PACKAGE_ROOT, SOURCE_DIR, free_port, unique_name

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import writer_child  # noqa: E402

EPOCHS = 2
BATCH = 16


def start_child(endpoint, *extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "writer_child.py"), endpoint, str(EPOCHS), str(BATCH)] + list(extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("scheme", ["shm", "grpc", "auto"])
def test_loader_reads_every_batch_a_writer_published(scheme):
    if scheme == "shm":
        endpoint = "shm://" + unique_name("writer")
    else:
        endpoint = "%s://127.0.0.1:%d" % (scheme, free_port())
    child = start_child(endpoint)
    try:
        want = writer_child.expected(BATCH)
        assert [b["image"].shape[0] for b in want] == [16, 16, 16, 2]
        with datafeed.Loader(endpoint, timeout=60, connect_timeout=60) as loader:
            assert loader.transport == ("shm" if scheme in ("shm", "auto") else "grpc")
            with pytest.raises(TypeError, match="does not say how many batches"):
                len(loader)
            for epoch in range(EPOCHS):
                # One pass: one epoch (the Writer's end_epoch). Cloned: each
                # batch held would hold one of the ring's 4 slots.
                got = [(b.meta, {k: v.clone() for k, v in b.items()}) for b in loader]
                assert len(got) == len(want), "epoch %d" % epoch
                for k, ((meta, b), w) in enumerate(zip(got, want)):
                    assert meta["epoch"] == epoch and meta["batch_index"] == k
                    assert meta["first_index"] == 16 * k
                    assert list(b.keys()) == ["image", "label", "weight"]
                    assert b["image"].dtype == torch.float32 and torch.equal(b["image"], w["image"])
                    assert b["label"].dtype == torch.int64 and torch.equal(b["label"], w["label"])
                    assert b["weight"].dtype == torch.float64
                    assert np.array_equal(b["weight"].numpy(), w["weight"])
            assert list(loader) == []  # the end of the stream
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.split()[:2] == ["published", str(EPOCHS * len(want))]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_schema_mismatches_name_the_tensor():
    endpoint = "shm://" + unique_name("writer-schema")
    x = torch.zeros(8, 2, 3)
    y = torch.arange(8)
    with datafeed.Writer(endpoint, linger=0) as w:
        w.publish(image=x, label=y)
        with pytest.raises(datafeed.InvalidArgument, match="tensor 'label' is int32, but the first batch made it int64"):
            w.publish(image=x, label=y.int())
        with pytest.raises(datafeed.InvalidArgument, match=r"tensor 'image' has shape \[8, 3, 3\]"):
            w.publish(image=torch.zeros(8, 3, 3), label=y)
        with pytest.raises(datafeed.InvalidArgument, match=r"tensor 'image' has shape \[9, 2, 3\]"):
            w.publish(image=torch.zeros(9, 2, 3), label=torch.arange(9))
        with pytest.raises(datafeed.InvalidArgument, match="missing: label"):
            w.publish(image=x)
        with pytest.raises(datafeed.InvalidArgument, match="not in the schema: extra"):
            w.publish(image=x, label=y, extra=y)
        with pytest.raises(datafeed.InvalidArgument, match="'label' is a list"):
            w.publish(image=x, label=[1, 2])
        with pytest.raises(datafeed.InvalidArgument, match="epoch 0 is before the current epoch 1"):
            w.end_epoch()
            w.publish(image=x, label=y, epoch=0)
        w.publish(image=x[:3], label=y[:3])  # a smaller last batch fits
        assert w.batches == 2
    with pytest.raises(datafeed.FailedPrecondition, match="closed"):
        w.publish(image=x, label=y)


def test_plaintext_grpc_off_loopback_needs_insecure():
    port = free_port()
    with pytest.raises(datafeed.Error, match="insecure"):
        datafeed.Writer("grpc://0.0.0.0:%d" % port, slot_bytes=1 << 20, linger=0)
    with datafeed.Writer("grpc://0.0.0.0:%d" % port, slot_bytes=1 << 20, linger=0, insecure=True) as w:
        assert w.endpoint.endswith(":%d" % port)


def test_unknown_writer_option_is_named():
    with pytest.raises(datafeed.InvalidArgument, match="unknown writer option 'slot_cnt'"):
        datafeed.Writer("shm://" + unique_name("writer-opt"), slot_bytes=1 << 20, slot_cnt=3)


def test_endpoint_comes_from_the_argument_or_datafeed_endpoint(monkeypatch):
    monkeypatch.delenv("DATAFEED_ENDPOINT", raising=False)
    with pytest.raises(datafeed.InvalidArgument, match="no endpoint"):
        datafeed.Writer(slot_bytes=1 << 20)
    # $DATAFEED_TRANSPORT is the consumers' override: a writer ignores it.
    monkeypatch.setenv("DATAFEED_TRANSPORT", "grpc")
    name = unique_name("writer-env")
    monkeypatch.setenv("DATAFEED_ENDPOINT", "shm://" + name)
    with datafeed.Writer(slot_bytes=1 << 20, linger=0) as w:
        assert w.endpoint == "shm://" + name


def test_the_writer_benchmark_runs(tmp_path):
    """bench/python_writer_bench.py end to end on small batches (it measures
    nothing here; the figures come from its full run)."""
    pytest.importorskip("grpc", reason="python3-grpcio (scripts/deps.sh) runs the seed-style service")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    r = subprocess.run(
        [sys.executable, os.path.join(SOURCE_DIR, "bench", "python_writer_bench.py"), "--batch", "64",
         "--batches", "8", "--warmup", "2", "--json"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    cases = {c["case"]: c for c in out["results"]}
    assert set(cases) == {"memcpy", "datafeed-shm", "datafeed-grpc", "seed-grpcio"}
    assert all(c["MB_per_s"] > 0 and c["batches_per_s"] > 0 for c in cases.values())
    assert cases["seed-grpcio"]["vs_seed"] == 1.0 and cases["memcpy"]["vs_memcpy"] == 1.0
