"""One logging setup for every entry point. Secrets registered here never reach a log line.

Two formats of the same lines (``TRADEOPS_LOG_FORMAT``): text, ``TIME LEVEL LOGGER | MESSAGE``, and
json, one object per line with ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message`` (the
text line's message, unchanged), ``exception`` when there is a traceback, and the fields a record
carries in ``extra={"event": ..., "fields": {...}}`` as keys of their own (the ``signal_done`` line:
``event``, ``id``, ``symbol``, ``action``, ``conf``, ``bars``, ``ms_policy``, ``ms_total``).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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


JSON_KEYS = ("time", "level", "logger", "message", "exception", "stack", "event")


def _clean(value: Any) -> Any:
    """A field value JSON can hold, with every registered secret replaced (before escaping, so a
    secret holding a quote or a backslash is found as the text line would find it)."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        event = getattr(record, "event", None)
        if isinstance(event, str):
            line["event"] = redact(event)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                name = redact(str(key))
                if name not in JSON_KEYS:  # a field never hides the line's own keys
                    line[name] = _clean(value)
        return redact(json.dumps(line, ensure_ascii=False, default=str))


LogFormat = Literal["text", "json"]


def _formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return _RedactingFormatter(_FORMAT)
    raise ValueError(f"log format must be text or json, got {fmt!r}")


def setup_logging(
    level: str = "INFO",
    *,
    log_file: Path | None = None,
    console_level: str | None = None,
    fmt: LogFormat = "text",
) -> None:
    """Log to stderr at ``console_level`` (default ``level``) and, when given, to ``log_file`` at
    ``level``: interactive commands keep the terminal for the conversation and the file for the
    record (one line per decision, every scan). ``fmt``: text or json lines, in both places."""
    formatter = _formatter(fmt)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    console.setLevel(console_level or level)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(formatter)
        to_file.setLevel(level)
        handlers.append(to_file)
    root.handlers[:] = handlers
    root.setLevel(level)
    # exchange-calendars reads Series.values, which pandas 3.1 deprecates: their warning, not the user's.
    warnings.filterwarnings("ignore", message=r"(Series|DatetimeIndex)\.values returning an ndarray")
    # Third-party libraries log request URLs that may carry tokens; keep them quiet by default.
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
