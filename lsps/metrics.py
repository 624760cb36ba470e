"""Metrics for dashboards (`lsp-metrics-port`, off by default): lsp-summary's figures
in the Prometheus text format, served on 127.0.0.1 by prometheus_client, plus a
histogram of how long JIT channels took from the start of their open to forwarding
the payment. Each scrape reads the listings afresh: the two never disagree."""

from __future__ import annotations

from typing import Iterator, List, Optional

from lsps.options import Get, Option, OptionError

OPTIONS = (
    Option("lsp-metrics-port", 0,
           "Serve Prometheus metrics on 127.0.0.1 at this TCP port (0: off)."),
)

PREFIX = "clnlsp"
# A summary entry that maps names to counts becomes one metric with this label.
LABELS = {"sessions_by_state": "state", "orders_by_state": "state",
          "holds_by_state": "state", "lsps2_buys_by_state": "state",
          "lsps1_orders_by_state": "state", "async_payments_sent_by_state": "state",
          "requests_served": "method", "requests_rejected": "code",
          "notifications_sent": "method", "mailbox_counts": "outcome",
          "jit_channels": "window"}
OPEN_TO_FORWARD_BUCKETS_S = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


def port(get: Get) -> Optional[int]:
    value = get("lsp-metrics-port")
    if not 0 <= value <= 65535:
        raise OptionError(f"lsp-metrics-port must be a TCP port (1-65535) or 0, got {value}")
    return value or None


def samples(summary: dict) -> List[tuple]:
    """The summary as (metric name, labels, value): a number is a gauge named after
    its path; a table of LABELS one metric per entry; nulls (no such thing) left out."""
    out: List[tuple] = []

    def walk(prefix: str, value, labels: dict) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int):
            out.append((prefix, labels, value))
            return
        for key, inner in value.items():
            label = LABELS.get(key)
            if label is None:
                walk(f"{prefix}_{key}", inner, labels)
                continue
            for entry, counted in inner.items():
                if isinstance(counted, dict):   # jit_channels: window -> figures
                    for figure, n in counted.items():
                        walk(f"{prefix}_{key}_{figure}", n, {**labels, label: entry})
                else:
                    walk(f"{prefix}_{key}", counted, {**labels, label: str(entry)})
    walk(PREFIX, {k: v for k, v in summary.items() if k != "at"}, {})
    return out


def open_to_forward(sessions: Optional[List[dict]]) -> Optional[tuple]:
    """(cumulative bucket counts as (le, n) including +Inf, sum in seconds) of the JIT
    sessions that forwarded, or None when this node sells no JIT channels."""
    if sessions is None:
        return None
    seconds = [s["open_to_forward_ms"] / 1000 for s in sessions
               if s.get("open_to_forward_ms") is not None]
    buckets = [(str(le), sum(1 for x in seconds if x <= le))
               for le in OPEN_TO_FORWARD_BUCKETS_S]
    return buckets + [("+Inf", len(seconds))], sum(seconds)


class SummaryCollector:
    """A prometheus_client collector: every scrape asks the overview afresh."""

    def __init__(self, overview):
        self.overview = overview

    def describe(self) -> list:
        return []   # nothing to read at registration: lightningd may still be starting

    def collect(self) -> Iterator:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
        listings = self.overview.listings()
        families = {}
        for name, labels, value in samples(self.overview.summary(listings=listings)):
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(
                    name, f"lsp-summary: {name[len(PREFIX) + 1:]}", labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()
        histogram = open_to_forward(listings["lsps2_sessions"])
        if histogram is not None:
            yield HistogramMetricFamily(
                f"{PREFIX}_lsps2_open_to_forward_seconds",
                "JIT channels: from the start of the open to forwarding the payment",
                buckets=histogram[0], sum_value=histogram[1])


def serve(port_number: int, overview):
    """Start the exporter on 127.0.0.1; returns the HTTP server (shutdown() stops it)."""
    from prometheus_client import CollectorRegistry, start_http_server
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SummaryCollector(overview))
    try:
        server, _thread = start_http_server(port_number, addr="127.0.0.1", registry=registry)
    except OSError as e:
        raise OptionError(f"lsp-metrics-port: cannot listen on 127.0.0.1:{port_number}: "
                          f"{e.strerror or e}") from None
    return server
