"""Reading /metrics in tests with prometheus_client's own parser.

prometheus_client picks its multiprocess mode when it is first imported, and the service
switches that mode on when it starts (cds_service.metrics). The parser is therefore imported
inside the function, after an app exists: importing it when test modules are collected would
put the whole test session in single-process mode.
"""

from __future__ import annotations

from typing import Any

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: Any) -> float:
    """A sample's value (0 when the series does not exist yet)."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: Any) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)
