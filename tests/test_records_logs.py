"""Resume never crashes on a damaged records file; log lines cannot be forged (fast, no models)."""

from __future__ import annotations

import json
import logging

from emotion_agent.evals.records import read_records
from emotion_agent.service.logs import RedactingFilter, escape_control


def rec(key: str) -> str:
    return json.dumps({"key": key, "gold": "joy", "label": "joy"})


def test_every_kind_of_damaged_line_is_moved_aside_with_a_message(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    lines = [rec("a"), "null", json.dumps({"gold": "joy"}), "{not json", rec("b"), rec("a"), "[1, 2]",
             rec("c").replace("joy", "jo\x00y", 1)]
    path.write_bytes(("\n".join(lines) + "\n" + rec("d")[:10]).encode())
    out = read_records(path, repair=True)
    assert [r["key"] for r in out] == ["a", "b", "c"]
    side = [json.loads(x) for x in (tmp_path / "records.rejected.jsonl").read_text().splitlines()]
    reasons = {s["reason"] for s in side}
    assert {"not JSON", "duplicate key", "unfinished last line", "NUL bytes removed"} <= reasons
    assert any(r.startswith("not a record") for r in reasons)
    assert "repaired" in capsys.readouterr().out
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    assert read_records(path, repair=True) == out  # a clean file is left alone


def test_control_characters_in_logged_values_cannot_make_a_second_line():
    assert escape_control("y\r\nWARNING forged\x00") == "y\\r\\nWARNING forged\\x00"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s 401", ("/v1/conversations/y\r\nWARNING x",),
                               None)
    RedactingFilter(["secret-key"]).filter(record)
    assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
