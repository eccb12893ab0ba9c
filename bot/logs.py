"""One logging setup for every entry point. Secrets registered here never reach a log line."""

from __future__ import annotations

import logging
import sys

_SECRETS: set[str] = set()
_FORMAT = "%(asctime)s %(levelname)s %(name)s | %(message)s"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party libraries log request URLs that may carry tokens; keep them quiet by default.
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
