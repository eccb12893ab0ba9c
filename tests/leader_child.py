"""One scheduler process for tests/test_leader.py: ``python -m tests.leader_child DB_URL REDIS_URL``.

It runs :class:`scheduler.leader.LeaderScheduler` on the real clock with one job on a fast candle
trigger, and prints one JSON object a line (flushed) for each thing the test watches: ``started``,
``leader`` (held true/false), ``fire`` (each FireRecord: fire time, coalesced, missed, unclaimed),
``stopped``. SIGTERM stops it cleanly (the lock is released).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import timedelta
from typing import Any

from scheduler.driver import FireRecord, ScanJob, ScanTick
from scheduler.leader import LeaderScheduler, RedisLease, leader_key, process_identity
from scheduler.triggers import CandleCloseTrigger
from storage.db import make_engine
from storage.fires import FireLog, deployment_id
from storage.migrate import ensure_latest
from venues.clock import RealClock

JOB_ID = "crypto"


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def main(args: argparse.Namespace) -> None:
    engine = make_engine(args.db_url)
    ensure_latest(engine)
    clock = RealClock()
    key = leader_key(deployment_id(engine, at=clock.now()))
    lease = RedisLease.from_url(args.redis_url, key, args.lease, holder=process_identity())

    async def scan(tick: ScanTick) -> None:
        emit("ran", fire_time=tick.fire_time.isoformat())

    def on_fire(record: FireRecord) -> None:
        emit(
            "fire",
            fire_time=record.fire_time.isoformat(),
            coalesced=[moment.isoformat() for moment in record.coalesced],
            missed=record.missed,
            unclaimed=record.unclaimed,
        )

    job = ScanJob(
        id=JOB_ID,
        trigger=CandleCloseTrigger(timedelta(seconds=args.every), delay=timedelta(0)),
        func=scan,
        misfire_grace_time=timedelta(seconds=args.grace),
    )
    scheduler = LeaderScheduler(
        [job],
        clock=clock,
        lease=lease,
        fires=FireLog(engine),
        on_leadership=lambda held: emit("leader", held=held),
        on_fire=on_fire,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    emit("started", key=key)
    try:
        await scheduler.run(stop)
    finally:
        await lease.aclose()
        engine.dispose()
    emit("stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db_url")
    parser.add_argument("redis_url")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--grace", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
