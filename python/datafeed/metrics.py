"""Prometheus metrics from a trainer: a prometheus_client collector over
Loader.stats().

    from prometheus_client import start_http_server
    loader = datafeed.Loader("grpc://prep-host:5000")
    loader.register_metrics(labels={"rank": "0"})   # the default registry
    start_http_server(9200)                          # /metrics on :9200

Every scrape reads loader.stats() once (a few counters under the loader's
lock; nothing waits for data). The metrics, each labelled with the
loader's endpoint and transport plus the labels given:

    datafeed_consumer_batches_total              batches received
    datafeed_consumer_samples_total              samples received
    datafeed_consumer_bytes_total                frame bytes received
    datafeed_consumer_batches_dropped_total      read-ahead batches whose lease
                                                 the producer took back
    datafeed_consumer_elapsed_seconds_total      since the first batch was asked for
    datafeed_consumer_wait_seconds_total         of that, waiting for data
    datafeed_consumer_data_wait_ratio            wait / elapsed since the start
    datafeed_consumer_batches_per_second         batches / elapsed since the start
    datafeed_consumer_samples_per_second         samples / elapsed since the start
    datafeed_consumer_held_batches               batches whose tensors are alive

The gauges are averages over the whole run; for the recent value divide
rates: rate(datafeed_consumer_wait_seconds_total[1m]) /
rate(datafeed_consumer_elapsed_seconds_total[1m]) is the data-wait
fraction of the last minute.

prometheus_client is optional: importing datafeed (and this module) does
not need it; making a collector without it raises ImportError naming the
package to install.
"""

import importlib
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from .loader import Loader

# (stats() key, metric name without _total, kind, help). Counters are
# "counter", the rest "gauge".
_METRICS: Tuple[Tuple[str, str, str, str], ...] = (
    ("batches", "datafeed_consumer_batches", "counter", "Batches this consumer received."),
    ("samples", "datafeed_consumer_samples", "counter", "Samples this consumer received."),
    ("bytes", "datafeed_consumer_bytes", "counter", "Frame bytes this consumer received."),
    ("dropped", "datafeed_consumer_batches_dropped", "counter",
     "Read-ahead batches whose lease the producer took back (they go to another consumer)."),
    ("elapsed_s", "datafeed_consumer_elapsed_seconds", "counter",
     "Seconds since the consumer first asked for a batch."),
    ("wait_s", "datafeed_consumer_wait_seconds", "counter",
     "Seconds the trainer spent waiting for data."),
    ("wait_fraction", "datafeed_consumer_data_wait_ratio", "gauge",
     "Fraction of the time since the start spent waiting for data (wait / elapsed)."),
    ("batches_per_s", "datafeed_consumer_batches_per_second", "gauge",
     "Batches per second since the start."),
    ("samples_per_s", "datafeed_consumer_samples_per_second", "gauge",
     "Samples per second since the start."),
    ("held_batches", "datafeed_consumer_held_batches", "gauge",
     "Batches whose tensors are still alive (each holds a transport slot)."),
)


def _prometheus() -> Any:
    """prometheus_client.core (the metric families; REGISTRY), or
    ImportError saying how to get it."""
    try:
        return importlib.import_module("prometheus_client.core")
    except ImportError as e:
        raise ImportError(
            "datafeed.metrics needs prometheus_client: apt-get install python3-prometheus-client "
            "(Debian) or pip install prometheus-client"
        ) from e


class LoaderCollector:
    """A prometheus_client custom collector for one Loader.

    ``labels`` are added to every sample (e.g. {"rank": "0"}), after the
    loader's own ``endpoint`` and ``transport``. Register it with
    ``registry.register(LoaderCollector(loader))``, or call
    ``loader.register_metrics()``. After loader.close() it keeps reporting
    the final counts; unregister it to drop them. Thread-safe: collect()
    only calls loader.stats().
    """

    def __init__(self, loader: "Loader", labels: Optional[Mapping[str, str]] = None) -> None:
        self._prom = _prometheus()
        self._loader = loader
        extra = dict(labels or {})
        for reserved in ("endpoint", "transport"):
            if reserved in extra:
                raise ValueError(
                    "LoaderCollector: the label %r is the loader's own; name yours differently" % reserved
                )
        self._label_names: List[str] = ["endpoint", "transport"] + sorted(extra)
        self._extra: Dict[str, str] = extra

    def _families(self) -> Dict[str, Any]:
        core = self._prom
        out: Dict[str, Any] = {}
        for key, name, kind, doc in _METRICS:
            cls = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            out[key] = cls(name, doc, labels=self._label_names)
        return out

    def describe(self) -> Iterator[Any]:
        """The metric families without samples (lets a registry refuse a
        second collector with the same names)."""
        return iter(self._families().values())

    def collect(self) -> Iterator[Any]:
        """One sample per metric from loader.stats(); nothing when stats()
        is empty (in a forked child, which does not own the loader)."""
        stats = self._loader.stats()
        if not stats:
            return iter(())
        values = [str(stats.get("endpoint") or ""), str(stats.get("transport") or "")]
        values += [self._extra[k] for k in self._label_names[2:]]
        families = self._families()
        for key, family in families.items():
            if key in stats:
                family.add_metric(values, float(stats[key]))
        return iter(families.values())


def register(loader: "Loader", registry: Any = None, labels: Optional[Mapping[str, str]] = None) -> LoaderCollector:
    """Registers a LoaderCollector for `loader` with `registry` (default:
    prometheus_client.REGISTRY, which start_http_server serves) and
    returns it (registry.unregister(collector) removes it)."""
    collector = LoaderCollector(loader, labels)
    (registry if registry is not None else collector._prom.REGISTRY).register(collector)
    return collector
