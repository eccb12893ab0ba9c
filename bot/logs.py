"""One logging setup for every entry point. Secrets registered here never reach a log line."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

_SECRETS: set[str] = set()
_FORMAT = "%(asctime)s %(levelname)s %(name)s | %(message)s"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace every registered secret in the record itself (message, arguments, traceback), so no
    handler sees it: not ours, not a library's, not a test's capture."""
    if not _SECRETS:
        return record
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: the handler reports it, unredacted args stay out
        message = redact(str(record.msg))
        record.msg, record.args = message, None
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    return record


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed = False


def install_redaction() -> None:
    """Redact every log record where it is made (a logger filter would miss child loggers'
    records), and keep HTTP client loggers, which log request URLs, at WARNING: a Bot API URL
    carries the bot's token. Idempotent."""
    global _installed
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        return redact_record(make(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    for name in ("", "httpx", "httpcore", "telegram"):
        logging.getLogger(name).addFilter(RedactingFilter())
    _installed = True


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", *, log_file: Path | None = None, console_level: str | None = None) -> None:
    """Log to stderr at ``console_level`` (default ``level``) and, when given, to ``log_file`` at
    ``level``: interactive commands keep the terminal for the conversation and the file for the
    record (one line per decision, every scan)."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_RedactingFormatter(_FORMAT))
    console.setLevel(console_level or level)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(_RedactingFormatter(_FORMAT))
        to_file.setLevel(level)
        handlers.append(to_file)
    root.handlers[:] = handlers
    root.setLevel(level)
    # exchange-calendars reads Series.values, which pandas 3.1 deprecates: their warning, not the user's.
    warnings.filterwarnings("ignore", message=r"(Series|DatetimeIndex)\.values returning an ndarray")
    # Third-party libraries log request URLs that may carry tokens; keep them quiet by default.
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
