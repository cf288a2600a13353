"""A short, deterministic hint for the chatbot: what tone to take given the fused label and confidence.

No LLM involved: the same label and confidence always give the same hint, so a chatbot can rely on
it and tests can pin it. Below ``LOW`` confidence the hint stays neutral and says the signal is weak;
between ``LOW`` and ``HIGH`` it is softened ("may be"); above ``HIGH`` it is direct.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

LOW, HIGH = 0.35, 0.6

_HINTS: dict[str, tuple[str, str, str]] = {
    # label: (tone, what to do, escalate?)
    "anger": ("calm, apologetic, concrete",
              "acknowledge the frustration, apologise once, offer a concrete next step and a time frame; "
              "do not argue or use humour", "consider a human agent if it continues"),
    "sadness": ("warm, patient, supportive",
                "acknowledge how they feel, keep sentences short and gentle, offer help without rushing", ""),
    "fear": ("reassuring, clear, steady",
             "reassure, explain exactly what happens next, give safe options and avoid alarming words", ""),
    "disgust": ("respectful, serious, accountable",
                "take the complaint seriously, avoid defending the product, offer to fix or escalate",
                "consider a human agent if it continues"),
    "surprise": ("clear, explanatory",
                 "confirm what surprised them, explain briefly what happened and why", ""),
    "joy": ("friendly, upbeat",
            "mirror the positive mood briefly, thank them, keep the momentum toward their goal", ""),
    "neutral": ("neutral, efficient, polite",
                "answer directly and concisely; no emotional framing needed", ""),
}


class ReplyHint(BaseModel):
    """Deterministic guidance for the chatbot's reply to the turn."""

    tone: str = Field(description="Tone the chatbot should take.")
    guidance: str = Field(description="What the reply should do, in a sentence.")
    certainty: str = Field(description="'high', 'medium' or 'low' — how firmly to act on the emotion.")
    escalate: bool = Field(default=False, description="Whether a human hand-off is worth considering.")
    text: str = Field(description="One line combining the above (what a prompt for the chatbot can include).")


def reply_hint(label: str, confidence: float) -> ReplyHint:
    """The hint for ``label`` at ``confidence``: neutral below ``LOW``, softened below ``HIGH``."""
    tone, guidance, escalate_note = _HINTS.get(label, _HINTS["neutral"])
    if confidence < LOW:
        certainty = "low"
        tone_n, guidance_n = _HINTS["neutral"][0], _HINTS["neutral"][1]
        text = (f"Emotion signal is weak ({label}, {confidence:.2f}): stay {tone_n}; {guidance_n}."
                if label != "neutral" else f"Stay {tone_n}; {guidance_n}.")
        return ReplyHint(tone=tone_n, guidance=guidance_n, certainty=certainty, escalate=False, text=text)
    certainty = "high" if confidence >= HIGH else "medium"
    lead = f"The user seems to feel {label}" if certainty == "high" else f"The user may feel {label}"
    if label == "neutral":
        lead = "The user seems neutral" if certainty == "high" else "The user is probably neutral"
    escalate = bool(escalate_note) and certainty == "high"
    text = f"{lead}: be {tone}; {guidance}" + (f"; {escalate_note}" if escalate else "") + "."
    return ReplyHint(tone=tone, guidance=guidance, certainty=certainty, escalate=escalate, text=text)
