"""Scorers of a MELD run: explanation checks and their rates, the adjudication curve, latency percentiles."""

from __future__ import annotations

from typing import Any

import numpy as np

from emotion_agent.agent.explain import ID_IN_TEXT, asserted_labels, mentions_label
from emotion_agent.evals.metrics import classification_report


# ---- explanation checks ----------------------------------------------------------------------
def explanation_checks(result: dict[str, Any]) -> dict[str, Any] | None:
    """The two checks on one stored result (``None`` when it has no explanation).

    *Agreement* (documented rule): the explanation names the emitted label (the label word or one of
    its forms in :data:`LABEL_WORDS`, whole word, case-insensitive) AND asserts no other label as the
    answer (no ``labeled/classified as Y``, ``the emotion/label/answer is Y`` with Y another label).
    Mentioning other labels as evidence ("the text expert gave surprise 0.2") is allowed.
    *Citations valid*: every id in ``cited_evidence_ids`` and every ``[id]`` written in the prose is
    the id of an evidence item of this record; ``cites_any`` says whether at least one id was cited.
    """
    text = result.get("explanation")
    if not text:
        return None
    label = result["label"]
    low = text.lower()
    mentioned = mentions_label(low, label)
    others = asserted_labels(text) - {label}
    ids = {e["id"] for e in result.get("evidence", [])}
    listed = list(result.get("cited_evidence_ids") or [])
    prose = ID_IN_TEXT.findall(text)
    invalid = sorted({c for c in listed + prose if c not in ids})
    return {"agrees": bool(mentioned and not others), "label_mentioned": mentioned,
            "other_labels_asserted": sorted(others), "citations_valid": not invalid, "invalid_ids": invalid,
            "list_citations_valid": all(c in ids for c in listed), "prose_citations_valid": all(c in ids for c in prose),
            "cites_any": bool(listed or prose), "source": result.get("explanation_source")}


def explanation_summary(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rates (percent) of the :func:`explanation_checks` over a run's records, and the keys that failed them."""
    checks = [r["checks"] for r in records if r.get("checks")]
    if not checks:
        return None

    def rate(ok: Any) -> float:
        """Percent of the checked records for which ``ok(check)`` holds."""
        return 100.0 * sum(ok(c) for c in checks) / len(checks)

    return {"n": len(checks),
            "agreement_rate": rate(lambda c: c["agrees"]),
            "citation_validity_rate": rate(lambda c: c["citations_valid"]),
            "cites_any_rate": rate(lambda c: c["cites_any"]),
            "list_citation_validity_rate": rate(lambda c: c.get("list_citations_valid", True)),
            "prose_citation_validity_rate": rate(lambda c: c.get("prose_citations_valid", True)),
            "llm_share": rate(lambda c: c.get("source") == "llm"),
            "disagreements": [r["key"] for r in records if r.get("checks") and not r["checks"]["agrees"]][:50],
            "invalid_citations": [r["key"] for r in records
                                  if r.get("checks") and not r["checks"]["citations_valid"]][:50]}


#: Margins at which a run's adjudication is re-scored from its records (the LLM's pick does not depend on it).
ADJUDICATION_THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def adjudication_summary(records: list[dict[str, Any]], bootstrap: int = 0) -> dict[str, Any] | None:
    """How adjudication went in a run, and what smaller margins would have scored.

    Every record adjudicated at the run's margin M stores the fused label, the margin and the LLM's pick;
    for any t <= M the label "the pick where margin < t, else the fused label" is exactly what a run at
    margin t would emit, so one run gives the whole curve (W-F1 vs t, t = 0 is fusion alone).
    """
    adj = [r["result"].get("adjudication") for r in records]
    if not any(adj):
        return None
    run_margin = max(a["threshold"] for a in adj if a)
    gold = [r["gold"] for r in records]
    fused = [a["fused_label"] if a else r["label"] for a, r in zip(adj, records)]
    asked = [a for a in adj if a and a["status"] != "not_needed"]
    curve = []
    for t in (0.0, *sorted({t for t in ADJUDICATION_THRESHOLDS if t < run_margin} | {run_margin})):
        def within(a: dict[str, Any], t: float = t) -> bool:  # at the run's own margin: exactly the turns it asked about
            """Whether a run at margin ``t`` would have asked the LLM about ``a``."""
            return a["status"] != "not_needed" if t == run_margin else a["margin"] < t

        pred = [a["chosen"] if a and a["status"] == "applied" and within(a) else f for a, f in zip(adj, fused)]
        rep = classification_report(gold, pred, bootstrap=bootstrap)
        curve.append({"margin": t, "adjudicated": sum(1 for a in asked if within(a)),
                      "changed": sum(1 for p, f in zip(pred, fused) if p != f),
                      "weighted_f1": rep["weighted_f1"], "macro_f1": rep["macro_f1"], "accuracy": rep["accuracy"]})
    changed = [(a, r) for a, r in zip(adj, records) if a and a["changed"]]
    return {"margin": run_margin, "asked": len(asked),
            "applied": sum(a["status"] == "applied" for a in asked),
            "failed": sum(a["status"] == "failed" for a in asked),
            "changed": len(changed),
            "changed_to_correct": sum(r["label"] == r["gold"] for _, r in changed),
            "changed_from_correct": sum(a["fused_label"] == r["gold"] for a, r in changed),
            "picked_first_candidate": sum(a["status"] == "applied" and a["chosen"] == a["candidates"][0]
                                          for a in asked),
            "llm_ms_p50": percentile([a["latency_ms"] for a in asked], 50), "curve": curve}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``values``, rounded to 2 decimals (None when empty)."""
    return round(float(np.percentile(values, q)), 2) if values else None
