"""What a MELD run asks for: its options (:class:`RunConfig`), the experts each modality brings, and the
run folder's ``config.json`` that makes a resumed run refuse other options."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODALITY_EXPERTS: dict[str, tuple[str, ...]] = {
    "text": ("text_emotion",),
    "audio": ("transcribe", "speech_emotion"),
    "vision": ("facial_emotion", "describe_scene"),
}


class RunConfigError(ValueError):
    """The run folder belongs to a different configuration (user-facing, one line)."""


def context_setting(context: int | str) -> tuple[int, str]:
    """(previous turns recalled, text mode) of a ``--context`` value: ``online`` / ``offline`` recall 3 turns
    and put the dialogue model on the text expert; an integer K recalls K turns, the expert alone."""
    if isinstance(context, str) and context.strip().isdigit():
        context = int(context)
    if isinstance(context, int) and not isinstance(context, bool) and context >= 0:
        return context, "utterance"
    if context in ("online", "offline"):
        return 3, str(context)
    raise RunConfigError(f"context must be online, offline or a whole number >= 0 (got {context!r})")


@dataclass
class RunConfig:
    """What a MELD run asks for; the fields identify the run (see :meth:`run_id`)."""

    split: str = "dev"
    limit: int | None = None
    modalities: list[str] = field(default_factory=lambda: ["text"])
    #: ``online`` / ``offline`` (the text expert's dialogue model over the past, or past and future turns),
    #: or an integer K: the text expert alone with the K previous utterances recalled as context.
    context: int | str = 3
    explain: bool = False
    fusion: str = "weighted"
    seed: int = 13
    #: LLM adjudication of close calls (margin of the fused top-2 below ``adjudicate_margin``).
    adjudicate: bool = False
    adjudicate_margin: float = 0.1
    #: The text expert's model id (runs made before this field existed used the MiniLM head).
    text_model: str = "minilm-l6-int8 + linear head (text_emotion.npz)"

    def identity(self) -> dict[str, Any]:
        """The options as a dict (compared when a run folder is resumed)."""
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Short hash of :meth:`identity`."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:12]


def check_config(out: Path, cfg: RunConfig) -> None:
    """Write a new run folder's ``config.json``; refuse a folder made with other options."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        # Options added after a run was made take their defaults there (older runs still resume).
        old_id = {**RunConfig().identity(), **old.get("identity", {})}
        if old_id != cfg.identity():
            diff = {k: (old_id.get(k), v) for k, v in cfg.identity().items() if old_id.get(k) != v}
            raise RunConfigError(f"{out} holds a run with other options {diff}; rerun with the same options "
                                 "to resume, or choose a new --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"identity": cfg.identity(), "run_id": cfg.run_id(),
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
        os.replace(tmp, path)
