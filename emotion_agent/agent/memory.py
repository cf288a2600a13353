"""Conversation memory in Chroma: every turn with its label, recalled by conversation and similarity.

Embedded ``PersistentClient`` by default (a folder under the cache; survives restarts), or a
Chroma server when ``settings.chroma_url`` is set — the same data either way. Embeddings come
from the offline MiniLM encoder (Chroma's default embedder downloads a model and fails offline).
Recall never crosses conversations: every query is filtered by ``conversation_id``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import chromadb
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from emotion_agent.agent.recall import MemoryRecall, RecalledTurn
from emotion_agent.tools.settings import Settings
from emotion_agent.tools.embedding import shared_embedder

COLLECTION = "emotion_agent_turns"


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over the packaged int8 MiniLM (no download, no torch)."""

    def __init__(self, model: str = "minilm-l6-int8"):
        self.model = model

    def __call__(self, input: Documents) -> Embeddings:
        return list(shared_embedder(self.model).embed(list(input)))

    @staticmethod
    def name() -> str:
        """The name Chroma registers this embedding function under."""
        return "emotion-agent-minilm"

    def get_config(self) -> dict[str, Any]:
        """The config Chroma stores with the collection (the model name)."""
        return {"model": self.model}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbeddingFunction":
        """Rebuild the function from a stored config."""
        return MiniLMEmbeddingFunction(config.get("model", "minilm-l6-int8"))

    def default_space(self) -> str:  # type: ignore[override]
        """The distance Chroma should use: cosine."""
        return "cosine"


class MemoryStoreError(RuntimeError):
    """Memory store unavailable; message is user-facing."""


def _safe_id(conversation_id: str) -> str:
    cid = conversation_id.strip()
    if not cid or len(cid) > 128 or any(c in cid for c in "\x00\n\r"):
        raise ValueError("conversation id must be 1-128 printable characters")
    return cid


class ConversationMemory:
    """Stores and recalls turns. Thread-safe; one instance per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        chroma_settings = chromadb.config.Settings(anonymized_telemetry=False)
        try:
            if settings.chroma_url:
                from urllib.parse import urlparse

                u = urlparse(settings.chroma_url)
                self.client = chromadb.HttpClient(host=u.hostname or "127.0.0.1", port=u.port or 8000,
                                                  ssl=u.scheme == "https", settings=chroma_settings)
            else:
                path = settings.memory_path
                path.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            self.collection = self.client.get_or_create_collection(
                COLLECTION, embedding_function=MiniLMEmbeddingFunction(), metadata={"hnsw:space": "cosine"}
            )
        except Exception as exc:  # chromadb raises many types; the user needs one clear line
            where = settings.chroma_url or settings.memory_path
            raise MemoryStoreError(f"cannot open conversation memory at {where}: {exc}") from exc

    # ---- writing -------------------------------------------------------------------------
    def next_turn_index(self, conversation_id: str) -> int:
        """One past the highest stored turn index of the conversation (0 when empty)."""
        got = self.collection.get(where={"conversation_id": _safe_id(conversation_id)}, include=["metadatas"])
        indices = [int(m["turn_index"]) for m in got["metadatas"] or []]
        return max(indices) + 1 if indices else 0

    def remember(self, *, conversation_id: str, turn_index: int, speaker: str | None, text: str,
                 label: str, confidence: float, record: dict[str, Any] | None = None) -> str:
        """Store (upsert) one turn with its label and optional record; returns its id."""
        cid = _safe_id(conversation_id)
        turn_id = f"{cid}:{turn_index:06d}"
        meta: dict[str, Any] = {
            "conversation_id": cid, "turn_index": int(turn_index), "speaker": speaker or "",
            "label": label, "confidence": float(confidence), "created": time.time(),
        }
        if record is not None:
            meta["record"] = json.dumps(record, default=str)
        with self._lock:
            self.collection.upsert(ids=[turn_id], documents=[text or ""], metadatas=[meta])
        return turn_id

    def forget(self, conversation_id: str) -> int:
        """Delete every stored turn of the conversation; returns how many there were."""
        cid = _safe_id(conversation_id)
        with self._lock:
            got = self.collection.get(where={"conversation_id": cid}, include=[])
            if got["ids"]:
                self.collection.delete(ids=got["ids"])
        return len(got["ids"])

    # ---- reading -------------------------------------------------------------------------
    def conversation(self, conversation_id: str, with_records: bool = False) -> list[dict[str, Any]]:
        """The conversation's stored turns by turn index (with their records if asked)."""
        got = self.collection.get(where={"conversation_id": _safe_id(conversation_id)},
                                  include=["documents", "metadatas"])
        turns = []
        for tid, doc, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or []):
            item = {"id": tid, "turn_index": int(meta["turn_index"]), "speaker": meta.get("speaker") or None,
                    "text": doc, "label": meta.get("label"), "confidence": meta.get("confidence")}
            if with_records and meta.get("record"):
                item["record"] = json.loads(str(meta["record"]))
            turns.append(item)
        return sorted(turns, key=lambda t: t["turn_index"])

    def recall(self, conversation_id: str, text: str | None, *, previous: int = 3, similar: int = 2) -> MemoryRecall:
        """The last ``previous`` turns plus up to ``similar`` older turns most like ``text``."""
        turns = self.conversation(conversation_id)
        prev = turns[-previous:] if previous > 0 else []
        recall = MemoryRecall(previous=[RecalledTurn(conversation_id=conversation_id, **t) for t in prev])
        older = len(turns) - len(prev)
        if similar > 0 and text and text.strip() and older > 0:
            prev_ids = {t["id"] for t in prev}
            res = self.collection.query(query_texts=[text], n_results=min(similar + len(prev), len(turns)),
                                        where={"conversation_id": _safe_id(conversation_id)},
                                        include=["documents", "metadatas", "distances"])
            for tid, doc, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                                            res["distances"][0]):
                if tid in prev_ids or len(recall.similar) >= similar:
                    continue
                recall.similar.append(RecalledTurn(
                    id=tid, conversation_id=conversation_id, turn_index=int(meta["turn_index"]),
                    speaker=meta.get("speaker") or None, text=doc, label=meta.get("label"),
                    confidence=meta.get("confidence"), similarity=round(1.0 - float(dist), 3)))
        return recall
