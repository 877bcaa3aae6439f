"""deploy/observability holds: promtool accepts the alert rules and their unit tests pass, the
Grafana dashboard parses and its queries are valid PromQL, and every metric the rules and the
dashboard name is one that misp_platform.metrics defines (or Prometheus's own `up`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from misp_platform import metrics

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "alerts.yml"
RULE_TESTS = OBSERVABILITY / "alerts.test.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
# Series that Prometheus makes itself, not a process.
PROMETHEUS_OWN = frozenset({"up"})
# The sample names each metric type exposes, from its family name (prometheus-client's).
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",),
            "unknown": ("",)}
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NAME = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: deploy/local/install.sh (make install) installs it "
                    "with Debian's prometheus package")
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def defined_names() -> set[str]:
    """Every sample name misp_platform.metrics' registry exposes."""
    names: set[str] = set()
    for family in metrics.REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: the words left once strings, label
    matchers, ranges, label lists, functions and keywords are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = LABEL_LISTS.sub("", text)
    return {m.group() for m in NAME.finditer(text)
            if not text[m.end():].lstrip().startswith("(") and m.group() not in KEYWORDS}


def rule_exprs() -> dict[str, str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in rules["groups"] for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> dict[str, str]:
    """`<panel id>/<refId>`: the query, with Grafana's interval variable made a real range."""
    return {f"{panel['id']}/{target['refId']}":
            target["expr"].replace("$__rate_interval", "5m")
            for panel in dashboard()["panels"] if panel["type"] != "row"
            for target in panel["targets"]}


def test_the_name_finder_sees_metrics_and_nothing_else() -> None:
    expr = ('sum by (group) (max by (group, topic) (rate(consumer_lag{topic=~"a (b)"}[5m])))'
            ' > 1e3 and on (group) up == 0 or histogram_quantile(0.95, sum by (le) '
            '(rate(job_duration_seconds_bucket[$__rate_interval])))')
    assert metric_names(expr) == {"consumer_lag", "up", "job_duration_seconds_bucket"}


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_alert_rules_fire_as_their_unit_tests_expect() -> None:
    tested = promtool("test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert exprs
    as_rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{key.replace('/', '_')}", "expr": expr}
        for key, expr in exprs.items()]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(as_rules))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_has_one_row_per_concern_and_panels_on_the_datasource_variable() -> None:
    board = dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    rows = [i for i, p in enumerate(panels) if p["type"] == "row"]
    assert rows and rows[0] == 0
    for start, end in zip(rows, [*rows[1:], len(panels)], strict=True):
        assert end - start > 1, f"row {panels[start]['title']!r} has no panel"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]


@pytest.mark.parametrize("where", ["rules", "dashboard"])
def test_every_metric_used_is_defined_in_misp_platform_metrics(where: str) -> None:
    exprs = rule_exprs() if where == "rules" else dashboard_exprs()
    known = defined_names() | PROMETHEUS_OWN
    unknown = {}
    for key, expr in exprs.items():
        names = metric_names(expr)
        assert names, f"{key}: no metric found in {expr!r}"
        if names - known:
            unknown[key] = sorted(names - known)
    assert unknown == {}, f"metrics that misp_platform.metrics does not define: {unknown}"
