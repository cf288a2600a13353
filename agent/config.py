"""Runtime configuration.

One ``Settings`` object, every field overridable by an environment variable named
``EMOTION_AGENT_<FIELD>`` (upper case). Nodes and experts receive settings explicitly;
nothing reads globals at import time.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMPTS_DIR = REPO_ROOT / "prompts"
WEIGHTS_DIR = REPO_ROOT / "tools" / "weights"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotion-agent"


def _default_data() -> Path:
    return REPO_ROOT.parent / "shared" / "data"


@dataclass(kw_only=True)
class Settings:
    """Everything a run can be configured with. Env: ``EMOTION_AGENT_<FIELD>``."""

    cache_dir: Path = field(default_factory=_default_cache, metadata={"help": "Assembled models, caches."})
    data_dir: Path = field(default_factory=_default_data, metadata={"help": "MELD / speech / faces data."})
    memory_dir: Path | None = field(default=None, metadata={"help": "Chroma store (default <cache>/memory)."})
    chroma_url: str | None = field(default=None, metadata={"help": "Chroma server URL; embedded when unset."})
    llm: str = field(default="qwen2.5-coder-0.5b", metadata={"help": "Registry name or path to a GGUF file."})
    llm_threads: int = field(default=2, metadata={"help": "llama.cpp threads (generation and batch)."})
    llm_ctx: int = field(default=2048, metadata={"help": "LLM context window in tokens."})
    llm_prompt_cache_mb: int = field(default=0, metadata={"help": "llama.cpp RAM prompt cache (0 = only the "
                                                                  "automatic reuse of the previous prefix)."})
    llm_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint instead of in-process."})
    planner: str = field(default="auto", metadata={"help": "'auto' (every expert with input) or 'llm'."})
    fusion: str = field(default="learned", metadata={"help": "learned (best on MELD dev), weighted, text_only."})
    adjudicate: bool = field(default=False, metadata={"help": "Let the LLM pick between the fused top-2 labels "
                                                              "when their margin is small (off: lower on MELD dev)."})
    adjudicate_margin: float = field(default=0.1, metadata={"help": "Adjudicate when top-1 minus top-2 < this."})
    explain: bool = field(default=True, metadata={"help": "Ask the LLM for an explanation."})
    explain_grammar: str = field(default="fallback", metadata={"help": "'fallback': free JSON, grammar only if "
                                                                     "invalid (2x faster); 'always'. Explanations "
                                                                     "and adjudication."})
    context_turns: int = field(default=3, metadata={"help": "Previous turns of the conversation to use."})
    max_text_chars: int = field(default=2000, metadata={"help": "Longer text is truncated with a warning."})
    max_tool_rounds: int = field(default=3, metadata={"help": "Hard cap on LLM planner tool rounds."})
    text_weights: Path | None = field(default=None, metadata={"help": "Text expert head (.npz); packaged default."})
    # audio experts
    asr_backend: str = field(default="faster-whisper", metadata={"help": "'faster-whisper' or 'whisper'."})
    asr_model: str = field(default="whisper-tiny.en", metadata={"help": "Registry name, local path or hub id."})
    speech_model: str = field(default="whisper-head", metadata={"help": "'whisper-head' (offline) or an HF "
                                                                          "audio-classification path/hub id."})
    max_audio_s: float = field(default=60.0, metadata={"help": "Longer audio is refused with a clear error."})
    # vision experts
    video_frames: int = field(default=8, metadata={"help": "Frames sampled from a video."})
    frame_strategy: str = field(default="uniform", metadata={"help": "'uniform', 'middle' or 'expressive'."})
    face_select: str = field(default="largest", metadata={"help": "Primary face rule: 'largest' or 'central'."})
    vlm_model: str | None = field(default=None, metadata={"help": "VLM path/hub id; describe_scene off if unset."})

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def memory_path(self) -> Path:
        return self.memory_dir or (self.cache_dir / "memory")

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Defaults, then ``EMOTION_AGENT_*`` environment variables, then explicit ``overrides``."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"EMOTION_AGENT_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("cache_dir", "data_dir", "memory_dir", "text_weights"):
            if isinstance(values.get(key), str):
                values[key] = Path(values[key])
        return cls(**values)


def _coerce(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = str(f.type)
    if "bool" in kind:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    if "Path" in kind:
        return Path(raw).expanduser()
    return raw
