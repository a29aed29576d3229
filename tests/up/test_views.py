"""The queries of `bazaar top` and of the Grafana dashboard (views.py): every one parses in a
real Prometheus, names only rules the rule file records and metrics Bazaar exports, and the
checked-in dashboard is what the generator prints from them."""

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from bazaar.platform import observability, replicas  # noqa: F401 - register their metrics
from bazaar.runtime.cluster import grafana, prometheus, views
from tests.generated import assert_printed_by
from tests.up.live_prometheus import query, running_prometheus

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "bazaar-overview.json"


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> str:
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as url:
        yield url  # type: ignore[misc]


@pytest.mark.parametrize("expr", views.ALL_QUERIES)
def test_every_query_parses_in_prometheus(empty_prometheus: str, expr: str) -> None:
    answer = query(empty_prometheus, expr)
    assert answer["status"] == "success", answer


def test_a_query_that_does_not_parse_is_refused(empty_prometheus: str) -> None:
    """What the test above relies on: Prometheus refuses a broken query as bad_data."""
    answer = query(empty_prometheus, "sum by (service (up)")
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"


def _recorded() -> set[str]:
    groups = yaml.safe_load(prometheus.RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_every_rule_a_query_reads_is_recorded_by_the_rule_file() -> None:
    read = {name for expr in views.ALL_QUERIES for name in re.findall(r"\w+:\w+:\w+", expr)}
    assert read, "no query reads a recording rule"
    assert read - _recorded() == set()


def test_every_metric_a_query_reads_is_exported_by_bazaar() -> None:
    exported = set(REGISTRY._names_to_collectors)  # every sample name, suffixes included
    assert "bazaar_http_request_duration_seconds_bucket" in exported
    without_rules = [re.sub(r"\w+:\w+:\w+", "", expr) for expr in views.ALL_QUERIES]
    read = {name for expr in without_rules for name in re.findall(r"\bbazaar_\w+", expr)}
    assert len(read) >= 10
    assert read - exported == set()


def test_the_checked_in_dashboard_is_what_the_generator_prints() -> None:
    assert_printed_by("bazaar.runtime.cluster.grafana", DASHBOARD)


def test_the_dashboard_shows_every_query_once_on_a_grid_without_overlaps() -> None:
    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    shown = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert sorted(shown) == sorted(views.ALL_QUERIES)
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= grafana.WIDTH
        covered = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not covered & cells, panel["title"]
        cells |= covered
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == [view.title for view in views.VIEWS]
    assert board["templating"]["list"][0]["type"] == "datasource"
