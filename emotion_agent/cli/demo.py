"""``emotion-agent demo``: a guided tour of the agent on real data, or a MELD dialogue replayed.

Without ``--dialogue`` the tour shows, each on real inputs from the data folder: a text dialogue with memory
(MELD dev), a real acted-speech clip (RAVDESS acted anger, where the words and the voice disagree), the real
MELD video clip, and one ``why`` answer. Without the data folder it says so in one line, runs the text dialogue on a
short embedded exchange, and skips the clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emotion_agent.console import UserError, console, settings_from

#: Real clips of the data folder the tour plays (see the data folder's README for their provenance).
AUDIO_CLIP = Path("speech/ravdess/03-01-05-02-01-01-01.flac")   # RAVDESS actor 1, angry (strong), "Kids are talking by the door"
VIDEO_CLIP = Path("meld/media/train_dia1_utt0.mp4")              # MELD train dialogue 1, Joey, gold: surprise
#: The text dialogue used when the MELD labels are not there: (speaker, utterance).
EMBEDDED_DIALOGUE = [("Ana", "My flight got cancelled again."), ("Ben", "Oh no, not again!"),
                     ("Ana", "And now they want me to pay for the hotel myself. This is ridiculous.")]
WHY_QUESTION = "why not neutral?"
#: The MELD dev dialogue the tour plays (three turns: neutral, joy, surprise).
TOUR_DIALOGUE = 3


def _readings(result) -> str:  # noqa: ANN001 - FusedResult
    """Each modality's own top reading, on one line."""
    seen = []
    for e in result.evidence:
        if e.confidence > 0:
            top = max(e.distribution, key=e.distribution.__getitem__)
            seen.append(f"{e.modality} {top} {e.distribution[top]:.0%}")
    return ", ".join(seen) or "no usable evidence"


def _transcript_of(e) -> str | None:  # noqa: ANN001 - EmotionEvidence
    """The transcript an evidence carries (its typed ``transcript`` field), or None."""
    return e.transcript.text if e.transcript and e.transcript.text.strip() else None


def _show(result, gold: str | None = None) -> None:  # noqa: ANN001 - FusedResult
    verdict = f"[bold]{result.label}[/bold] ({result.confidence:.0%})"
    if gold is not None:
        colour = "green" if result.label == gold else "red"
        verdict = f"gold [bold]{gold}[/bold] → agent [{colour}]{verdict}[/{colour}]"
    console.print(f"{verdict}   readings: {_readings(result)}")
    tops = {e.modality: max(e.distribution, key=e.distribution.__getitem__) for e in result.evidence
            if e.confidence > 0}
    if result.disagreement or len(set(tops.values())) > 1:
        views = ("; ".join(f"{v.modality} {v.label} {v.probability:.0%}" for v in result.disagreement)
                 or "; ".join(f"{m} {lab}" for m, lab in tops.items()))
        strongest = max(result.contributions, key=result.contributions.__getitem__) if result.contributions else None
        console.print(f"[yellow]modalities disagree:[/yellow] {views}"
                      + (f" — the fused label follows the {strongest}, which weighed most" if strongest else ""))
    if result.explanation:
        console.print(f"[italic]{result.explanation}[/italic]")
    console.print("timings ms: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items()), style="dim")


def _text_dialogue(agent, settings, conv: str, turns: int, explain: bool) -> None:  # noqa: ANN001
    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.evals.meld import MeldError, dialogues, load_split

    try:
        lines = [(u.speaker, u.text, u.emotion) for u in dialogues(load_split("dev", settings.data_dir))[TOUR_DIALOGUE][:turns]]
        console.rule(f"1. A text dialogue with memory (MELD dev dialogue {TOUR_DIALOGUE})")
    except MeldError:
        lines = [(s, t, None) for s, t in EMBEDDED_DIALOGUE[:turns]]
        console.rule("1. A text dialogue with memory (embedded example: MELD labels not found)")
    for speaker, text, gold in lines:
        result = agent.analyze(make_turn(text=text, conversation_id=conv, speaker=speaker,
                                         settings=settings), explain=explain)
        console.print(f"[bold]{speaker}[/bold] (turn {result.turn_index}): \"{text}\"")
        _show(result, gold)
    held = len(agent.memory.conversation(conv)) if agent.memory else 0
    console.print(f"Memory now holds {held} turns of {conv}; each turn above was read with the ones before it.")


def _clip(agent, settings, title: str, rel: Path, kind: str, gold: str, explain: bool):  # noqa: ANN001, ANN202
    from emotion_agent.agent.inputs import make_turn

    console.rule(title)
    path = settings.data_dir / rel
    if not path.is_file():
        console.print(f"[yellow]skipped:[/yellow] {path} not found (set EMOTION_AGENT_DATA_DIR to the data folder)")
        return None
    console.print(f"{kind} clip: {rel}")
    result = agent.analyze(make_turn(**{kind: path}, settings=settings), explain=explain)
    transcript = next((t for e in result.evidence if (t := _transcript_of(e))), None)
    if transcript:
        console.print(f"transcript: \"{transcript}\"")
    _show(result, gold)
    return result


def tour(turns: int = 3, explain: bool = True, llm: Optional[str] = None) -> None:
    """The guided tour: text with memory, a real audio clip, the video clip, a disagreement and one ``why``."""
    import uuid

    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.agent.why import answer_why

    settings = settings_from(llm=llm)
    if not settings.data_dir.is_dir():
        console.print(f"[yellow]data folder {settings.data_dir} not found[/yellow] (set EMOTION_AGENT_DATA_DIR): "
                      "the text dialogue runs on an embedded example and the clips are skipped.")
    agent = EmotionAgent(settings)
    _text_dialogue(agent, settings, f"demo-{uuid.uuid4().hex[:6]}", turns, explain)
    audio = _clip(agent, settings, "2. A real audio clip (RAVDESS, acted anger): words and voice disagree", AUDIO_CLIP,
                  "audio", "anger", explain)
    _clip(agent, settings, "3. The real MELD video clip (Joey)", VIDEO_CLIP, "video", "surprise", explain)
    console.rule(f"4. Why? (about the audio clip: \"{WHY_QUESTION}\")")
    if audio is None:
        console.print("[yellow]skipped:[/yellow] the audio clip was not found")
        return
    answer = answer_why(audio, WHY_QUESTION)
    console.print(f"[italic]{answer.answer}[/italic]  (cites {', '.join(answer.cited_evidence_ids) or 'nothing'})")


def replay(dialogue: int, turns: int, explain: bool, llm: Optional[str]) -> None:
    """Replay a real MELD dev dialogue turn by turn through the agent, with memory."""
    import uuid

    from emotion_agent.agent.inputs import make_turn
    from emotion_agent.agent.runtime import EmotionAgent
    from emotion_agent.evals.meld import dialogues, load_split

    settings = settings_from(llm=llm)
    dias = dialogues(load_split("dev", settings.data_dir))
    if dialogue not in dias:
        raise UserError(f"MELD dev has no dialogue {dialogue} (ids {min(dias)}-{max(dias)})")
    agent = EmotionAgent(settings)
    conv = f"demo-dev{dialogue}-{uuid.uuid4().hex[:6]}"
    console.print(f"Replaying MELD dev dialogue {dialogue} as conversation [bold]{conv}[/bold] "
                  f"(memory at {settings.chroma_url or settings.memory_path})")
    correct = 0
    shown = dias[dialogue][:turns]
    for u in shown:
        turn = make_turn(text=u.text, conversation_id=conv, speaker=u.speaker, settings=settings)
        result = agent.analyze(turn, explain=explain)
        correct += result.label == u.emotion
        console.rule(f"turn {result.turn_index}: {u.speaker}")
        console.print(f"\"{u.text}\"")
        _show(result, u.emotion)
    console.rule()
    console.print(f"{correct}/{len(shown)} turns match MELD's gold labels. Memory now holds "
                  f"{len(agent.memory.conversation(conv)) if agent.memory else 0} turns of {conv}.")


def demo(
    dialogue: Optional[int] = typer.Option(None, help="Replay this MELD dev dialogue instead of the tour."),
    turns: int = typer.Option(6, help="How many turns of the dialogue to replay (the tour uses 3)."),
    explain: bool = typer.Option(True, "--explain/--no-explain"),
    llm: Optional[str] = typer.Option(None, help="LLM registry name or .gguf path."),
) -> None:
    """A guided tour on real data (text with memory, audio, video, a disagreement, a why), or a dialogue replay."""
    if dialogue is None:
        tour(explain=explain, llm=llm)
    else:
        replay(dialogue, turns, explain, llm)
