"""Offline MiniLM sentence embeddings (all-MiniLM-L6-v2, int8 ONNX, no torch).

Shared by the text expert and the conversation memory (also usable as a Chroma
embedding function). The model is the registry asset ``minilm-l6-int8`` by default, or
any folder holding ``model.onnx`` + ``tokenizer.json`` of a BERT-style sentence encoder.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from emotion_agent.tools.assets import resolve_path_or_asset
from emotion_agent.tools.settings import Settings

MAX_TOKENS = 128


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (384-d)."""

    def __init__(self, model: str = "minilm-l6-int8", settings: Settings | None = None, threads: int = 1):
        self.model_spec = model
        self._settings = settings
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        """The embedding size."""
        return 384

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = resolve_path_or_asset(self.model_spec, self._settings)
        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(Path(folder) / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tok

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` → float32 array of shape (n, 384), rows of unit norm."""
        with self._lock:
            if self._session is None:
                self._load()
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for start in range(0, len(texts), batch_size):
                batch = [t if t.strip() else "[empty]" for t in texts[start:start + batch_size]]
                enc = self._tokenizer.encode_batch(batch)
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if "token_type_ids" in self._inputs:
                    feeds["token_type_ids"] = np.zeros_like(ids)
                hidden = self._session.run(None, feeds)[0]
                m = mask[..., None].astype(np.float32)
                pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
                out[start:start + len(batch)] = pooled
            return out


_SHARED: dict[str, MiniLMEmbedder] = {}


def shared_embedder(model: str = "minilm-l6-int8", settings: Settings | None = None) -> MiniLMEmbedder:
    """One embedder per model spec per process (the text expert and memory share it)."""
    if model not in _SHARED:
        _SHARED[model] = MiniLMEmbedder(model, settings)
    return _SHARED[model]
