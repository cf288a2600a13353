"""Log hygiene for the service: secrets never reach a log line, and a log line cannot be forged.

Every record's message is rendered once, secrets are replaced, and control characters (CR, LF, NUL,
ESC...) that came from a client — a path, a header, a conversation id — are escaped as ``\\xNN``, so one
event is always exactly one line."""

from __future__ import annotations

import logging
import re


# ---- logs ---------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def escape_control(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x00``)."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return _CONTROL.sub(lambda m: named.get(m.group(0), f"\\x{ord(m.group(0)):02x}"), text)


class RedactingFilter(logging.Filter):
    """Replaces any configured secret (API keys, LLM key) in a log record and escapes control characters."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        msg = record.getMessage()
        red = escape_control(msg)
        for s in self.secrets:
            red = red.replace(s, "[redacted]")
        red = re.sub(r"(?i)(bearer\s+)\S+", r"\1[redacted]", red)
        if red != msg:
            record.msg, record.args = red, None
        return True


def install_log_redaction(secrets: list[str]) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` for ``secrets`` to the service's loggers; return it."""
    flt = RedactingFilter(secrets)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "emotion_agent", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


