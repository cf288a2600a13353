"""Load CTranslate2 (faster-whisper's engine) with its OpenMP threads passive: they sleep instead of spinning.

CTranslate2 bundles its own libgomp, whose idle threads spin-wait by default. Inside the agent, beside torch's
and onnxruntime's threads on a 2-core machine, that made a 0.3 s short-window Whisper decode take 2.7-4.5 s
(and a MELD video turn 5 s instead of 1.2 s): measured in docs/voice_latency.md. libgomp reads
``OMP_WAIT_POLICY`` once, when the library loads, so :func:`import_ctranslate2` sets it to ``PASSIVE`` only
while ``ctranslate2`` is first imported and restores the environment afterwards (torch's own libgomp keeps its
default). A policy the user set is respected; ``EMOTION_AGENT_CT2_PASSIVE=0`` turns this off.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()
#: The wait policy CTranslate2's OpenMP runtime was loaded with ("PASSIVE", the user's value, or "default").
loaded_policy: str | None = None


def import_ctranslate2() -> ModuleType:
    """``import ctranslate2``, the first time with ``OMP_WAIT_POLICY=PASSIVE`` for its OpenMP runtime."""
    global loaded_policy
    if "ctranslate2" in sys.modules:  # loaded already: its policy is fixed (import waits for a partial import)
        import ctranslate2

        return ctranslate2
    with _LOCK:
        if os.environ.get("EMOTION_AGENT_CT2_PASSIVE", "1") == "0" or "OMP_WAIT_POLICY" in os.environ:
            import ctranslate2

            loaded_policy = os.environ.get("OMP_WAIT_POLICY", "default")
            return ctranslate2
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        loaded_policy = "PASSIVE"
        try:
            import ctranslate2
        finally:
            os.environ.pop("OMP_WAIT_POLICY", None)
        return ctranslate2
