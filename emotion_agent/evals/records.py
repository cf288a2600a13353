"""The run records file: one JSON line per item, appended and fsync'ed; read back without ever crashing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any




# ---- records file ----------------------------------------------------------------------------
REQUIRED_FIELDS = ("key", "gold", "label")


def _valid(rec: Any) -> bool:
    return isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in REQUIRED_FIELDS)


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """All complete, well-formed records (first copy of each key), never raising on a damaged file.

    With ``repair`` the file is rewritten when anything is wrong with it: a truncated last line, NUL bytes,
    lines that are not a record (``null``, bad JSON, a record without ``key``) and duplicated keys. Nothing
    is thrown away: every removed line goes to ``<records>.rejected.jsonl`` with the reason, and a one-line
    summary of the repair is printed. The items of removed lines are simply analysed again.
    """
    if not path.is_file():
        return []
    data = path.read_bytes()
    out: list[dict[str, Any]] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: an unfinished write (or b"")
    if tail.strip():
        rejected.append(("unfinished last line", tail.decode("utf-8", "replace")))
    for raw in lines:
        if not raw.strip():
            continue
        text = raw.replace(b"\x00", b"").decode("utf-8", "replace")
        try:
            rec = json.loads(text)
        except ValueError:
            rejected.append(("not JSON", text))
            continue
        if not _valid(rec):
            rejected.append(("not a record (needs key, gold, label)", text))
            continue
        if rec["key"] in seen:
            rejected.append(("duplicate key", text))
            continue
        if b"\x00" in raw:
            rejected.append(("NUL bytes removed", raw.decode("utf-8", "replace")))
        seen.add(rec["key"])
        out.append(rec)
    if repair and (rejected or b"\x00" in data):
        side = path.with_name(path.stem + ".rejected.jsonl")
        with side.open("a", encoding="utf-8") as fh:
            for reason, line in rejected:
                fh.write(json.dumps({"reason": reason, "line": line}, ensure_ascii=False) + "\n")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            for rec in out:
                fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        reasons: dict[str, int] = {}
        for reason, _ in rejected:
            reasons[reason] = reasons.get(reason, 0) + 1
        print(f"repaired {path}: kept {len(out)} records; moved {len(rejected)} line(s) to {side.name} ("
              + ", ".join(f"{n} {r}" for r, n in reasons.items()) + "); their items will be analysed again",
              flush=True)
    return out


def append_record(fh: Any, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and fsync it."""
    fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    fh.flush()
    os.fsync(fh.fileno())
