"""datafeed.metrics: a prometheus_client collector over loader.stats(),
scraped as Prometheus would (generate_latest, then the text parser), from
a loader reading a real producer."""

import sys

import pytest

import datafeed
from conftest import MNIST_COUNT, free_port

BATCH = 100
TAKE = 4  # batches consumed before the scrape (of 10 in the epoch)

COUNTERS = {
    "batches": "datafeed_consumer_batches_total",
    "samples": "datafeed_consumer_samples_total",
    "bytes": "datafeed_consumer_bytes_total",
    "dropped": "datafeed_consumer_batches_dropped_total",
}
# Values that move while nothing is consumed (elapsed grows): bracketed by
# stats() before and after the scrape.
MOVING = {
    "elapsed_s": "datafeed_consumer_elapsed_seconds_total",
    "wait_s": "datafeed_consumer_wait_seconds_total",
    "wait_fraction": "datafeed_consumer_data_wait_ratio",
    "batches_per_s": "datafeed_consumer_batches_per_second",
    "samples_per_s": "datafeed_consumer_samples_per_second",
}


def prometheus():
    """prometheus_client, which the package does not need but this test does."""
    try:
        import prometheus_client
    except ImportError:
        pytest.fail("prometheus_client is not installed for %s: apt-get install python3-prometheus-client "
                    "(scripts/deps.sh)" % sys.executable)
    return prometheus_client


def scrape(registry):
    """{sample name: (labels, value)} of one scrape of `registry`."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, family.name + " has no help text"
        for sample in family.samples:
            assert sample.name not in out, "two samples of " + sample.name
            out[sample.name] = (sample.labels, sample.value)
    return out, text


@pytest.mark.parametrize("transport", ["shm", "grpc"])
def test_scrape_agrees_with_loader_stats(mnist_dir, transport):
    prometheus_client = prometheus()
    endpoint = None if transport == "shm" else "grpc://127.0.0.1:%d" % free_port()
    registry = prometheus_client.CollectorRegistry()
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=1,
                        endpoint=endpoint) as p:
        with datafeed.Loader(p.endpoint, timeout=30, prefetch=1) as loader:
            collector = loader.register_metrics(registry, labels={"rank": "3"})
            it = iter(loader)
            held = [next(it) for _ in range(TAKE)]  # kept alive: held_batches counts them
            before = loader.stats()
            samples, text = scrape(registry)
            after = loader.stats()

            labels = {"endpoint": loader.endpoint, "transport": transport, "rank": "3"}
            for key, name in COUNTERS.items():
                assert name in samples, name + " missing from\n" + text
                got_labels, value = samples[name]
                assert got_labels == labels, name
                assert value == before[key] == after[key], name
            assert samples["datafeed_consumer_batches_total"][1] == TAKE
            assert samples["datafeed_consumer_samples_total"][1] == TAKE * BATCH
            assert samples["datafeed_consumer_bytes_total"][1] > TAKE * BATCH * 28 * 28 * 4
            assert samples["datafeed_consumer_held_batches"][1] == before["held_batches"] == len(held)
            for key, name in MOVING.items():
                value = samples[name][1]
                lo, hi = sorted((before[key], after[key]))
                assert lo <= value <= hi, "%s = %r, stats() said %r then %r" % (name, value, lo, hi)
            assert samples["datafeed_consumer_elapsed_seconds_total"][1] > 0
            assert samples["datafeed_consumer_batches_per_second"][1] > 0
            assert 0 <= samples["datafeed_consumer_data_wait_ratio"][1] <= 1

            # The counters follow the loader: one more batch, one more counted.
            del held
            next(it)
            assert scrape(registry)[0]["datafeed_consumer_batches_total"][1] == TAKE + 1

            # A second collector with the same names is refused by the registry.
            with pytest.raises(ValueError, match="Duplicated"):
                loader.register_metrics(registry, labels={"rank": "3"})
            for _ in it:
                pass
        # After close(): the final counts stay until it is unregistered.
        final = scrape(registry)[0]
        assert final["datafeed_consumer_batches_total"][1] == MNIST_COUNT // BATCH
        registry.unregister(collector)
        assert "datafeed_consumer_batches_total" not in scrape(registry)[0]
        assert p.wait(10) == 0


def test_loader_labels_cannot_be_overridden(mnist_dir):
    prometheus()
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=1) as p:
        with datafeed.Loader(p.endpoint, timeout=30) as loader:
            with pytest.raises(ValueError, match="'transport' is the loader's own"):
                datafeed.metrics.LoaderCollector(loader, labels={"transport": "x"})


def test_without_prometheus_client_the_error_names_the_package(mnist_dir, monkeypatch):
    # None in sys.modules makes `import prometheus_client` raise ImportError,
    # as on a machine without it; datafeed itself was imported without it.
    for name in [m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=1) as p:
        with datafeed.Loader(p.endpoint, timeout=30) as loader:
            with pytest.raises(ImportError, match="python3-prometheus-client.*pip install prometheus-client"):
                loader.register_metrics()
            with pytest.raises(ImportError, match="python3-prometheus-client"):
                datafeed.metrics.LoaderCollector(loader)
