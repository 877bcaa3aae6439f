"""The settings screen marks the settings this product only stores (`used_here: false` in the
API's rows: features that live outside it), on tabs of a few hundred rows."""

from __future__ import annotations

from typing import Any

from console.pages.settings import setting_row
from console.viewer import Viewer
from console.web import templates


def _row(name: str, *, used_here: bool | None, kind: str = "boolean",
         value: Any = False) -> dict[str, Any]:
    row: dict[str, Any] = {"setting": name, "type": kind, "value": value, "level": 2,
                           "tab": "Plugin", "description": f"What {name} does."}
    if used_here is not None:
        row["used_here"] = used_here
    return row


def _page(rows: list[dict[str, Any]]) -> str:
    viewer = Viewer(user={"id": 1, "email": "admin@admin.test", "org_id": 1},
                    role={"perm_site_admin": True, "perm_admin": True},
                    organisation={"id": 1, "name": "ORGNAME"}, csrf_token="t" * 32)
    shown = [setting_row(r) for r in rows]
    return templates.get_template("settings/tab.html").render(
        request=None, viewer=viewer, flash=None, csrf_field="csrf", csrf_token="t" * 32,
        static="/static", path="/servers/serverSettings/Plugin", tab="Plugin", tabs=[],
        rows=shown, counts={"critical": 0, "recommended": 0, "optional": 0}, errors={},
        not_used=sum(1 for r in shown if not r["used_here"]))


def test_a_row_is_used_here_unless_the_api_says_otherwise() -> None:
    assert setting_row(_row("MISP.log_auth", used_here=True))["used_here"] is True
    assert setting_row(_row("MISP.log_auth", used_here=None))["used_here"] is True
    assert setting_row(_row("Plugin.ZeroMQ_enable", used_here=False))["used_here"] is False


def test_the_tab_marks_the_settings_not_used_here_and_says_how_many() -> None:
    html = _page([_row("Plugin.ZeroMQ_enable", used_here=False),
                  _row("Plugin.Kafka_enable", used_here=False),
                  _row("MISP.log_auth", used_here=True)])

    assert html.count('<span class="badge not-used">not used here</span>') == 3  # 2 + the note
    assert "2 of these 3 settings drive features that live outside this product" in html
    zmq_row = html[html.index('id="s-Plugin.ZeroMQ_enable"'):]
    assert zmq_row.index("not used here") < zmq_row.index("</tr>")
    log_row = html[html.index('id="s-MISP.log_auth"'):]
    assert "not used here" not in log_row[:log_row.index("</tr>")]


def test_a_tab_of_several_hundred_settings_renders_every_row() -> None:
    # (its time is bench/console.py's business: the MISP and Plugin tabs)
    rows = [_row(f"Plugin.Module_{i}_setting", used_here=i % 3 != 0,
                 kind=("boolean", "numeric", "string")[i % 3], value=i) for i in range(400)]
    html = _page(rows)

    assert html.count("<tr id=") == 400
    assert html.count('<span class="badge not-used">not used here</span>') == 134 + 1
