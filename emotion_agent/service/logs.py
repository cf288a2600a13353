"""Log hygiene for the service: secrets never reach a log line."""

from __future__ import annotations

import logging
import re


# ---- logs ---------------------------------------------------------------------------------------
class RedactingFilter(logging.Filter):
    """Replaces any configured secret (API keys, LLM key) that reaches a log record."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        red = msg
        for s in self.secrets:
            red = red.replace(s, "[redacted]")
        red = re.sub(r"(?i)(bearer\s+)\S+", r"\1[redacted]", red)
        if red != msg:
            record.msg, record.args = red, None
        return True


def install_log_redaction(secrets: list[str]) -> RedactingFilter:
    flt = RedactingFilter(secrets)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "emotion_agent", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


