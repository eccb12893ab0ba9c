"""Scheduling: session-aware triggers, live APScheduler wiring and the fast-forward driver."""

from scheduler.driver import (
    FastForwardDriver,
    FireRecord,
    ScanJob,
    ScanTick,
    build_scheduler,
)
from scheduler.triggers import CandleCloseTrigger, SessionTrigger, fire_times, trigger_for

__all__ = [
    "CandleCloseTrigger",
    "FastForwardDriver",
    "FireRecord",
    "ScanJob",
    "ScanTick",
    "SessionTrigger",
    "build_scheduler",
    "fire_times",
    "trigger_for",
]
