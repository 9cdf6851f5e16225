"""The Grafana dashboard only charts metrics the worker really exports."""

import json
import re
from pathlib import Path

from streams.worker import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "dashboards" / "callstt.json"


def exported_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        names |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "counter":  # a labelled counter has no samples until first used
            names.add(family.name + "_total")
    return names


def test_every_dashboard_query_uses_an_exported_metric():
    exprs = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(callstt_[a-z_]+)", expr)}
    assert used and used <= exported_names() | {name + "_bucket" for name in exported_names()}
