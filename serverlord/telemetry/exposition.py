"""The Prometheus text format (0.0.4) of what the OpenTelemetry SDK collected.

Names follow the usual OpenTelemetry-to-Prometheus rules: dots become
underscores, the unit is spelled out as a suffix (``_milliseconds``), a
monotonic sum is a counter ending in ``_total``, and the resource's attributes
become the labels of ``target_info``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    Metric,
    MetricsData,
    Sum,
)

CONTENT_TYPE = "text/plain; version=0.0.4"
"""Litestar adds the charset (utf-8)."""

_UNITS = {"ms": "milliseconds", "s": "seconds", "By": "bytes"}
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def render(data: MetricsData | None, extra: Iterable[Metric] = ()) -> str:
    """The whole exposition: target_info, then every metric with data points."""
    lines: list[str] = []
    metrics: list[Metric] = list(extra)
    resource_attributes: Mapping[str, Any] = {}
    if data is not None:
        for resource_metrics in data.resource_metrics:
            resource_attributes = resource_metrics.resource.attributes
            for scope in resource_metrics.scope_metrics:
                metrics += scope.metrics
    if resource_attributes:
        lines += [
            "# HELP target_info Target metadata",
            "# TYPE target_info gauge",
            f"target_info{_labels(resource_attributes)} 1",
        ]
    for metric in sorted(metrics, key=lambda m: m.name):
        lines += _metric(metric)
    return "\n".join(lines) + "\n"


def prometheus_name(metric: Metric) -> str:
    name = _INVALID.sub("_", metric.name)
    suffix = _UNITS.get(metric.unit or "")
    if suffix and not name.endswith("_" + suffix):
        name = f"{name}_{suffix}"
    return name


def _metric(metric: Metric) -> Iterator[str]:
    data = metric.data
    if not data.data_points:
        return
    name = prometheus_name(metric)
    help_text = (metric.description or metric.name).replace("\\", r"\\")
    help_text = help_text.replace("\n", r"\n")
    if isinstance(data, Histogram):
        yield f"# HELP {name} {help_text}"
        yield f"# TYPE {name} histogram"
        for point in data.data_points:
            labels = dict(point.attributes or {})
            running = 0
            bounds = [*point.explicit_bounds, math.inf]
            for bound, count in zip(bounds, point.bucket_counts, strict=True):
                running += count
                le = _labels({**labels, "le": _number(float(bound))})
                yield f"{name}_bucket{le} {running}"
            yield f"{name}_sum{_labels(labels)} {_number(point.sum)}"
            yield f"{name}_count{_labels(labels)} {point.count}"
        return
    if isinstance(data, Sum) and data.is_monotonic:
        kind, sample = "counter", f"{name}_total"
    elif isinstance(data, (Sum, Gauge)):
        kind, sample = "gauge", name
    else:
        return
    yield f"# HELP {sample} {help_text}"
    yield f"# TYPE {sample} {kind}"
    for number in data.data_points:
        yield f"{sample}{_labels(number.attributes or {})} {_number(number.value)}"


def _labels(attributes: Mapping[str, Any]) -> str:
    if not attributes:
        return ""
    # Keys that become one label name (k8s.pod.name, k8s_pod_name) share it,
    # their values joined in the order of the keys: Prometheus refuses a
    # scrape that names a label twice.
    values: dict[str, list[str]] = {}
    for key in sorted(attributes):
        values.setdefault(label_name(key), []).append(str(attributes[key]))
    pairs = ",".join(
        f'{name}="{_escape(";".join(joined))}"' for name, joined in values.items()
    )
    return "{" + pairs + "}"


def label_name(key: str) -> str:
    """An attribute's key as a label name Prometheus accepts.

    Characters other than letters, digits and ``_`` become ``_``; a name that
    would start with a digit or with ``__`` (kept for Prometheus' own labels)
    gets ``key_`` in front.
    """
    name = _INVALID.sub("_", key) or "key"
    if name[0].isdigit() or name.startswith("__"):
        name = f"key_{name}"
    return name


def _escape(value: Any) -> str:
    text = str(value)
    return text.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
