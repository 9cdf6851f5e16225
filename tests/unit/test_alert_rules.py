"""The alert rules (infra/prometheus/alerts.yml) with Prometheus's own tool: valid, loaded by
prometheus.yml, on metrics the worker exports, and each one firing when its cause is made and
quiet on a healthy worker (promtool's rule tests, infra/prometheus/alerts_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from callstt.streams.worker import metrics

PROMETHEUS = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def exported_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        names |= {sample.name for sample in family.samples} | {family.name}
        if family.type == "counter":  # a labelled counter has no samples until first used
            names.add(family.name + "_total")
    return names


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/setup installs Debian's prometheus package"
    return subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]]


def test_the_rules_and_the_config_that_loads_them_are_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0 and "1 rule files found" in config.stdout, config.stdout + config.stderr


def test_every_alert_fires_on_its_cause_and_stays_quiet_on_a_healthy_worker():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    names = {rule["alert"] for rule in rules()}
    assert fired == names and quiet == names  # no alert without both tests


def test_the_rules_use_metrics_the_worker_exports():
    used = {name for rule in rules() for name in re.findall(r"\b(callstt_[a-z_]+)", rule["expr"])}
    assert used and used <= exported_names() | {name + "_bucket" for name in exported_names()}
