"""The runner across real processes on one database: a card sent by one process is answered by
another, a process killed inside the execute step (after the broker took the order) is recovered by
the next one without a second order, and answers racing from several processes place one order.

The other processes run this module (``python -m tests.test_runner_process``), which wires the
application like tests/test_graph.py does and acts at the simulated moment it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.test_graph import CRYPTO, Rig, eth_clock, eth_pending, rig
from venues.clock import SimulatedClock
from venues.models import Order, OrderRequest

ROOT = Path(__file__).resolve().parent.parent
KILLED = 86  # exit status of a child killed on purpose inside execute
CHILD_TIMEOUT = 60


async def _spawn(db_url: str, now: datetime, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.test_runner_process",
        db_url,
        now.isoformat(),
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, dict[str, Any]]:
    """Wait for a child; its answer is the last line it printed."""
    out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT)
    lines = out.decode().strip().splitlines()
    assert process.returncode is not None
    if process.returncode not in (0, KILLED) or (process.returncode == 0 and not lines):
        raise AssertionError(f"child failed ({process.returncode}):\n{err.decode()[-3000:]}")
    return process.returncode, json.loads(lines[-1]) if lines and process.returncode == 0 else {}


async def _run(db_url: str, now: datetime, *args: str) -> tuple[int, dict[str, Any]]:
    return await _finish(await _spawn(db_url, now, *args))


async def test_another_process_approves_the_card(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
    # The first process is gone; a new one opens the same database and answers the card.
    code, answer = await _run(db_url, clock.now(), "approve", walk.signal_id)
    assert code == 0 and answer == {"won": True, "decision": "approved", "status": "executed"}
    async with rig(db_url, clock) as later:
        (order,) = later.orders(walk.signal_id)
        assert order.client_order_id == walk.signal_id
        assert len(later.plans(walk.signal_id)) == 1
        assert await later.next_nodes(walk.signal_id) == ()
        assert sorted(later.trace_nodes(walk.signal_id)) == ["decide", "execute", "risk"]


async def test_a_process_killed_inside_execute_is_recovered_by_the_next(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
    code, _ = await _run(db_url, clock.now(), "approve-and-die", walk.signal_id)
    assert code == KILLED
    async with rig(db_url, clock) as between:
        # The decision and the order are stored; the thread stopped inside execute.
        assert between.status(walk.signal_id) == "approved"
        assert len(between.orders(walk.signal_id)) == 1 and between.plans(walk.signal_id) == []
        assert await between.next_nodes(walk.signal_id) == ("execute",)
    code, answer = await _run(db_url, clock.now(), "recover")
    assert code == 0 and answer == {"resumed": [walk.signal_id]}
    async with rig(db_url, clock) as later:
        assert later.status(walk.signal_id) == "executed"
        assert len(later.orders(walk.signal_id)) == 1 and len(later.plans(walk.signal_id)) == 1
        assert await later.next_nodes(walk.signal_id) == ()


async def test_answers_racing_from_several_processes_place_one_order(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
    children = [await _spawn(db_url, clock.now(), "approve", walk.signal_id, "--wait") for _ in range(3)]
    # Every child is wired and waiting before any answers: the answers race, not the start-ups.
    for child in children:
        assert child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), CHILD_TIMEOUT)
        assert ready.strip() == b"ready", ready
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
    await asyncio.gather(*(c.stdin.drain() for c in children if c.stdin is not None))
    answers = [answer for _, answer in await asyncio.gather(*(_finish(c) for c in children))]
    assert sum(a["won"] for a in answers) == 1, answers
    assert {a["decision"] for a in answers} == {"approved"}
    async with rig(db_url, clock) as later:
        assert later.status(walk.signal_id) == "executed"
        assert len(later.orders(walk.signal_id)) == 1 and len(later.plans(walk.signal_id)) == 1
        assert len(later.approvals(walk.signal_id)) == 1


# --- the child process ---


async def _child(db_url: str, now: str, action: str, signal_id: str, *, wait: bool) -> dict[str, Any]:
    async with rig(db_url, SimulatedClock(datetime.fromisoformat(now))) as app:
        if action == "recover":
            return {"resumed": await app.runner.recover()}
        if action == "approve-and-die":
            _die_after_the_order(app)
        if wait:  # for the parent's "go" on stdin, so that the answers of several processes race
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        result = await app.runner.decide(signal_id, "approved", actor=f"process:{os.getpid()}")
        return {"won": result.outcome.won, "decision": result.outcome.decision, "status": result.status}


def _die_after_the_order(app: Rig) -> None:
    """The broker takes the order, then the process dies at once: no exception handler, no
    cleanup, no checkpoint of the execute step."""
    broker = app.venues[CRYPTO].broker_required()
    place = broker.place

    async def place_then_die(request: OrderRequest) -> Order:
        await place(request)
        os._exit(KILLED)

    broker.place = place_then_die  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db_url")
    parser.add_argument("now")
    parser.add_argument("action", choices=["approve", "approve-and-die", "recover"])
    parser.add_argument("signal_id", nargs="?", default="")
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()
    answer = asyncio.run(_child(args.db_url, args.now, args.action, args.signal_id, wait=args.wait))
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
