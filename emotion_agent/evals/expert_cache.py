"""Expert outputs cached by content hash, so a rerun that only changes fusion or prompts skips the experts.

:class:`CachedExpert` wraps a real expert and keeps its contract (same name, modality, stage,
``accepts``), so the agent graph is unchanged — the eval runner simply hands the wrapped
experts to :class:`agent.runtime.EmotionAgent`. The key hashes everything the expert's output
depends on: expert name and model id, a fingerprint of its weights file, the words of the
turn (and transcript), the context turns it is given, and the media files (path, size, mtime).

The store is one SQLite file (``<cache_dir>/expert_cache.sqlite``, WAL mode); a lost write
after a crash only costs a recomputation. On a hit the evidence gets a fresh id (ids stay
unique across records) and ``extra['cache'] = 'hit'``; ``latency_ms`` is the time actually
spent (the lookup) and ``extra['computed_latency_ms']`` the expert's original latency.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from emotion_agent.tools.base import Expert, TurnInput
from emotion_agent.tools.evidence import EmotionEvidence, new_id

CACHE_VERSION = "3"  # 2: the text expert reports its own context size; 3: greedy Whisper decoding (beam 1)


def file_fingerprint(path: Path | str | None) -> str | None:
    """Cheap content fingerprint of a file: sha256 of (size, mtime_ns, first and last 64 KiB)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return f"missing:{p}"
    st = p.stat()
    h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with p.open("rb") as fh:
        h.update(fh.read(65536))
        if st.st_size > 65536:
            fh.seek(max(65536, st.st_size - 65536))
            h.update(fh.read(65536))
    return h.hexdigest()[:20]


class ExpertCache:
    """Tiny key → JSON store in SQLite. Thread-safe; commits every ``commit_every`` writes and on close.

    Several processes may share the file (eval runs of different sessions): each write is committed at once by
    default, so no process holds SQLite's write lock across turns, and a write or read that still meets a
    locked database is skipped (counted in ``skipped``) — the cache only saves work, it never stops a run. The
    lock wait is short (``timeout``, 2 s): a writer that commits each value holds the lock for milliseconds, and a
    process that holds it longer (older code, batched commits) must not slow every turn of this run by 30 s.
    """

    def __init__(self, path: Path, commit_every: int = 1, timeout: float = 2.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS evidence (key TEXT PRIMARY KEY, expert TEXT, "
                         "value TEXT, created REAL)")
        self._db.commit()
        self._pending = 0
        self.commit_every = commit_every
        self.hits = 0
        self.misses = 0
        self.skipped = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value for ``key``, or None."""
        with self._lock:
            try:
                row = self._db.execute("SELECT value FROM evidence WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError:  # locked by another process past the timeout: compute instead
                self.skipped += 1
                return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, expert: str, value: dict[str, Any]) -> None:
        """Store ``value`` for ``key`` (committed every ``commit_every`` writes)."""
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?)",
                                 (key, expert, json.dumps(value), time.time()))
                self._pending += 1
                if self._pending >= self.commit_every:
                    self._db.commit()
                    self._pending = 0
            except sqlite3.OperationalError:  # locked past the timeout: this value is simply not cached
                self.skipped += 1
                self._db.rollback()
                self._pending = 0

    def flush(self) -> None:
        """Commit pending writes (dropped, and counted in ``skipped``, if the database stays locked)."""
        with self._lock:
            try:
                self._db.commit()
            except sqlite3.OperationalError:
                self.skipped += self._pending
                self._db.rollback()
            self._pending = 0

    def close(self) -> None:
        """Commit and close the database."""
        self.flush()
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM evidence").fetchone()[0])


def turn_key(expert: Expert, turn: TurnInput, weights_fp: str | None, context_k: int | None = None) -> str:
    """Content hash of what ``expert`` reads from ``turn`` (``context_k``: how many context turns it reads)."""
    context = turn.context if context_k is None else (turn.context[-context_k:] if context_k > 0 else [])
    payload = {
        "v": CACHE_VERSION,
        "expert": expert.name,
        "model_id": expert.model_id,
        "weights": weights_fp,
        "text": turn.text,
        "transcript": turn.transcript,
        "context": [[t.speaker, t.text] for t in context],
        "audio": file_fingerprint(turn.audio_path),
        "image": file_fingerprint(turn.image_path),
        "video": file_fingerprint(turn.video_path),
    }
    if turn.future:  # only offline text mode gives later turns (older keys stay valid)
        payload["future"] = [[t.speaker, t.text] for t in turn.future]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class CachedExpert(Expert):
    """An expert whose outputs are looked up by content hash before it runs."""

    def __init__(self, inner: Expert, cache: ExpertCache):
        self.inner = inner
        self.cache = cache
        # Same identity as the wrapped expert, so the graph, tools and planner see no difference.
        self.name = inner.name  # type: ignore[misc]
        self.modality = inner.modality  # type: ignore[misc]
        self.description = inner.description  # type: ignore[misc]
        self.stage = inner.stage  # type: ignore[misc]
        weights = None
        for attr in ("fingerprint_path", "weights_path", "weights", "model_path"):
            value = getattr(inner, attr, None)
            if isinstance(value, (str, Path)):
                weights = value
                break
        self._weights_fp = file_fingerprint(weights) if weights is not None else None
        self.last_status: str | None = None
        self._context_k: int | None | bool = False  # False: not looked up yet

    def context_k(self) -> int | None:
        """How many previous turns the wrapped expert reads (None: unknown, hash them all)."""
        if self._context_k is False:
            value = getattr(self.inner, "context_turns", None)
            self._context_k = int(value) if isinstance(value, int) else None
        return self._context_k  # type: ignore[return-value]

    @property
    def model_id(self) -> str:
        """The wrapped expert's model id."""
        return self.inner.model_id

    def accepts(self, turn: TurnInput) -> bool:
        """Whether the wrapped expert accepts ``turn``."""
        return self.inner.accepts(turn)

    def _analyze(self, turn: TurnInput) -> EmotionEvidence:  # pragma: no cover - analyze is overridden
        return self.inner._analyze(turn)

    def warmup(self) -> None:
        """Load the wrapped expert's model."""
        self.inner.warmup()

    def attributions(self, turn: TurnInput, label: str) -> Any:
        """The wrapped expert's word attributions (never cached: only explanations ask for them)."""
        return self.inner.attributions(turn, label)  # type: ignore[attr-defined]

    def analyze(self, turn: TurnInput) -> EmotionEvidence:
        """Cached evidence (fresh id) on a hit, else the wrapped expert's evidence (then cached)."""
        start = time.perf_counter()
        key = turn_key(self.inner, turn, self._weights_fp, self.context_k())
        hit = self.cache.get(key)
        if hit is not None:
            ev = EmotionEvidence.model_validate(hit)
            prefix = ev.id.split("-")[0] if "-" in ev.id else self.name.split("_")[0]
            extra = {**ev.extra, "cache": "hit", "computed_latency_ms": round(ev.latency_ms, 2)}
            ev = ev.model_copy(update={"id": new_id(prefix), "extra": extra,
                                       "latency_ms": (time.perf_counter() - start) * 1000.0})
            self.cache.hits += 1
            self.last_status = "hit"
            return ev
        ev = self.inner.analyze(turn)
        # Crashes raise (and are not cached); "unusable input" evidence is deterministic and is cached.
        self.cache.put(key, self.name, ev.model_dump(mode="json"))
        self.cache.misses += 1
        self.last_status = "miss"
        return ev.model_copy(update={"extra": {**ev.extra, "cache": "miss",
                                               "computed_latency_ms": round(ev.latency_ms, 2)}})


def wrap_experts(experts: dict[str, Expert], cache: ExpertCache) -> dict[str, Expert]:
    """Each expert wrapped in a :class:`CachedExpert` over ``cache``."""
    return {name: CachedExpert(e, cache) for name, e in experts.items()}
