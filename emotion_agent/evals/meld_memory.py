"""The eval's conversation memory for MELD: previous utterances of the dialogue, labelled by the text expert."""

from __future__ import annotations

from typing import Any


from emotion_agent.agent.inputs import InputError, clean_text, make_turn
from emotion_agent.agent.recall import MemoryRecall, RecalledTurn
from emotion_agent.evals.meld import Utterance, dialogues
from emotion_agent.tools.base import PriorTurn
from emotion_agent.tools.settings import Settings


class EvalMemory:
    """In-process stand-in for Chroma with MELD's dialogues: recall returns the previous utterances.

    Their labels are the text expert's predictions (cached), never gold. The runner sets
    :attr:`current` before each turn; the graph calls :meth:`recall` like it calls Chroma's.
    """

    def __init__(self, utts: list[Utterance], text_expert: Any, settings: Settings, context: int):
        self.dias = dialogues(utts)
        self.text_expert = text_expert
        self.settings = settings
        self.context = context
        self.current: Utterance | None = None
        self.last_recall: MemoryRecall = MemoryRecall()

    def turn_for(self, u: Utterance, k: int) -> Any:
        """The turn for utterance ``u`` with its previous ``k`` utterances as context (in the online and offline
        text modes: its whole dialogue, see :meth:`dialogue`)."""
        past, future = self.dialogue(u)
        if past is None:
            prev = self.dias[u.dialogue_id][max(0, u.position - k):u.position] if k > 0 else []
            past = [PriorTurn(speaker=p.speaker, text=self.clean(p.text)) for p in prev]
        return make_turn(text=u.text, speaker=u.speaker, conversation_id=conv_id(u), turn_index=u.position,
                         context=past, future=future, max_chars=self.settings.max_text_chars)

    def dialogue(self, u: Utterance) -> tuple[list[PriorTurn] | None, list[PriorTurn]]:
        """The context and later turns a turn of ``u`` is given: in the ``online`` text mode its whole past, in
        ``offline`` also its later turns (the dialogue model reads the dialogue as it was trained to); in
        ``utterance`` mode (None, []): the recalled turns are the context."""
        mode = self.settings.text_mode
        if mode == "utterance":
            return None, []
        turns = self.dias.get(u.dialogue_id, [])
        past = [PriorTurn(speaker=p.speaker, text=self.clean(p.text)) for p in turns[:u.position]]
        later = turns[u.position + 1:] if mode == "offline" else []
        return past, [PriorTurn(speaker=p.speaker, text=self.clean(p.text)) for p in later]

    def clean(self, text: str) -> str:
        """``text`` cleaned as the agent cleans user text (empty string if nothing is left)."""
        return clean_text(text, self.settings.max_text_chars)[0] or ""

    def next_turn_index(self, conversation_id: str) -> int:
        """The current utterance's position in its dialogue (0 when none is set)."""
        return self.current.position if self.current else 0

    def recall(self, conversation_id: str, text: str | None, *, previous: int = 3, similar: int = 2) -> MemoryRecall:
        """The previous ``previous`` utterances of the current utterance, labelled by the text expert.

        Only for the current utterance's own conversation: another ``conversation_id`` recalls nothing.
        """
        u = self.current
        if u is None or previous <= 0 or conversation_id != conv_id(u):
            self.last_recall = MemoryRecall()
            return self.last_recall
        prev = self.dias[u.dialogue_id][max(0, u.position - previous):u.position]
        out = []
        for p in prev:
            try:
                ev = self.text_expert.analyze(self.turn_for(p, self.context)) if self.text_expert else None
            except InputError:  # a wordless earlier utterance ("...") has no prediction, like in the agent
                ev = None
            out.append(RecalledTurn(id=f"{conv_id(p)}:{p.position:06d}", conversation_id=conv_id(p),
                                    turn_index=p.position, speaker=p.speaker, text=self.clean(p.text),
                                    label=ev.label if ev else None, confidence=round(ev.confidence, 4) if ev else None,
                                    distribution=ev.distribution if ev else None))
        self.last_recall = MemoryRecall(previous=out)
        return self.last_recall

    def remember(self, **_: Any) -> str:  # eval turns are not stored
        """Store nothing: eval turns are not remembered."""
        return ""


def conv_id(u: Utterance) -> str:
    """The conversation id of ``u``'s dialogue: ``meld-<split>-dia<D>``."""
    return f"meld-{u.split}-dia{u.dialogue_id}"
