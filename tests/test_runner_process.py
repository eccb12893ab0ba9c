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

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy import Engine

from storage.signals import CLOCK_KEY
from tests.support import CHILD_TIMEOUT, child_answer, child_env, release_together, wait_for_go
from tests.test_graph import CRYPTO, Rig, eth_clock, eth_pending, rig
from venues.clock import SimulatedClock
from venues.models import Order, OrderRequest

ROOT = Path(__file__).resolve().parent.parent
KILLED = 86  # exit status of a child killed on purpose inside execute


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
    return await child_answer(process, allowed=(0, KILLED))


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


# Where a process may die after the broker took the order: inside execute, before its writes are
# saved (the thread's next step is still execute); or after a step's writes are saved but before the
# next checkpoint, where LangGraph's ``next`` is empty although the walk has not ended (the cause of
# issue 7's "approved forever": the runner took the empty ``next`` for a finished thread).
KILL_POINTS = {
    "order-taken": (1, ("execute",)),
    "decision-saved": (0, ()),
    "execution-saved": (1, ()),
}


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
async def test_a_process_killed_after_approving_is_finished_by_the_next(
    engine: Engine, db_url: str, kill_point: str
) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
    code, _ = await _run(db_url, clock.now(), "approve-and-die", walk.signal_id, "--die-at", kill_point)
    assert code == KILLED
    orders_left, next_left = KILL_POINTS[kill_point]
    async with rig(db_url, clock) as between:
        stopped = between.status(walk.signal_id) == "approved"
        if engine.dialect.name == "sqlite":
            # The SQLite saver writes in line, so the process died exactly there: the decision is
            # stored, the walk stopped before its outcome was recorded. (PostgresSaver saves a
            # step's writes in the background: the process may die a step or two later.)
            assert stopped
            assert len(between.orders(walk.signal_id)) == orders_left
            assert await between.next_nodes(walk.signal_id) == next_left
    # The next process that starts (its lock on the thread is free: the holder died) finishes it.
    # PostgreSQL ends a dead client's session, and so frees its advisory lock, only once the server
    # has noticed the closed socket: a process starting within that moment skips the thread as held,
    # and the next one to look finishes it.
    resumed: list[str] = []
    for _ in range(20):
        code, answer = await _run(db_url, clock.now(), "recover")
        assert code == 0
        resumed += answer["resumed"]
        if resumed or not stopped:
            break
        await asyncio.sleep(0.25)
    assert resumed == ([walk.signal_id] if stopped else [])
    async with rig(db_url, clock) as later:
        assert later.status(walk.signal_id) == "executed"
        history = [change.to_status for change in later.signals.history(walk.signal_id)]
        assert history == ["pending", "approved", "executed"]
        assert len(later.orders(walk.signal_id)) == 1 and len(later.plans(walk.signal_id)) == 1
        if stopped:  # (on PostgreSQL a death after record's own writes can leave its checkpoint unsaved)
            assert await later.next_nodes(walk.signal_id) == ()
        assert await later.runner.recover() == []


async def test_answers_racing_from_several_processes_place_one_order(engine: Engine, db_url: str) -> None:
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
    children = [await _spawn(db_url, clock.now(), "approve", walk.signal_id, "--wait") for _ in range(3)]
    # Every child is wired and waiting before any answers: the answers race, not the start-ups.
    await release_together(children)
    answers = [answer for _, answer in await asyncio.gather(*(_finish(c) for c in children))]
    assert sum(a["won"] for a in answers) == 1, answers
    assert {a["decision"] for a in answers} == {"approved"}
    async with rig(db_url, clock) as later:
        assert later.status(walk.signal_id) == "executed"
        assert len(later.orders(walk.signal_id)) == 1 and len(later.plans(walk.signal_id)) == 1
        assert len(later.approvals(walk.signal_id)) == 1


async def _spawn_cli(data_dir: Path, db_url: str, places: Path, *args: str, hold: bool = False) -> Any:
    """``tradeops chat ...`` in a new process on ``data_dir`` and ``db_url``, its paper brokers
    logging every order placement to ``places``; with ``hold`` the first placement waits for "go"."""
    env = child_env(TRADEOPS_DATA_DIR=str(data_dir), TRADEOPS_DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.test_runner_process",
        "cli",
        str(places),
        "hold" if hold else "-",
        *args,
        cwd=data_dir,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_an_approval_racing_processes_that_start_meanwhile_executes_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Issue 7's input: ``/approve ID`` in one process while more processes start on the same data
    (more ``/approve ID``, read-only commands). Every process start runs ``recover``; none may
    resume the thread the approver is executing. The approver is held inside execute, just before
    the broker takes the order, until every other process has started, answered and exited."""
    clock = eth_clock()
    async with rig(db_url, clock) as first:
        walk = await eth_pending(first)
        first.signals.set_value(CLOCK_KEY, {"mode": "simulated", "now": clock.now().isoformat()}, at=clock.now())
    data_dir, places = tmp_path / "data", tmp_path / "places.log"
    data_dir.mkdir()
    approver = await _spawn_cli(data_dir, db_url, places, "chat", "-c", f"/approve {walk.signal_id}", hold=True)
    assert approver.stdout is not None and approver.stdin is not None
    held = await asyncio.wait_for(approver.stdout.readline(), CHILD_TIMEOUT)
    assert held.strip() == b"placing", held
    commands = [f"/approve {walk.signal_id}", "/signals all", f"/approve {walk.signal_id}"]
    others = []
    for command in commands:
        others.append(await _spawn_cli(data_dir, db_url, places, "chat", "-c", command))
        await asyncio.sleep(0.2)  # staggered starts, as in the issue; the order of events does not depend on it
    replies = [await asyncio.wait_for(o.communicate(), CHILD_TIMEOUT) for o in others]
    approver.stdin.write(b"go\n")
    await approver.stdin.drain()
    out, err = await asyncio.wait_for(approver.communicate(), CHILD_TIMEOUT)
    assert approver.returncode == 0, err.decode()[-3000:]
    assert f"{walk.signal_id} approved by console:0: order {walk.signal_id} placed" in out.decode()
    for command, other, (other_out, other_err) in zip(commands, others, replies, strict=True):
        text = other_out.decode()
        assert "Traceback" not in other_err.decode(), other_err.decode()[-3000:]
        if command.startswith("/approve"):
            assert other.returncode == 1 and f"already decided: {walk.signal_id} approved by console:0" in text
        else:
            assert other.returncode == 0, other_err.decode()[-3000:]
    async with rig(db_url, clock) as later:
        assert later.status(walk.signal_id) == "executed"
        history = [change.to_status for change in later.signals.history(walk.signal_id)]
        assert history == ["pending", "approved", "executed"]
        assert len(later.orders(walk.signal_id)) == 1 and len(later.approvals(walk.signal_id)) == 1
    # The execute step placed once, in one process: the entry and its bracket, each once.
    placed = [line.split() for line in places.read_text().splitlines()]
    assert len({pid for pid, _ in placed}) == 1
    assert sorted(coid for _, coid in placed) == sorted(
        [walk.signal_id, *(f"{walk.signal_id}-{leg}" for leg in ("sl", "tp1", "tp2", "tp3"))]
    )


# --- the child process ---


async def _child(db_url: str, now: str, action: str, signal_id: str, *, wait: bool, die_at: str) -> dict[str, Any]:
    async with rig(db_url, SimulatedClock(datetime.fromisoformat(now))) as app:
        if action == "recover":
            return {"resumed": await app.runner.recover()}
        if action == "approve-and-die" and die_at == "order-taken":
            _die_after_the_order(app)
        elif action == "approve-and-die":
            _die_after_saving(app, "decision" if die_at == "decision-saved" else "execution")
        if wait:  # for the parent's "go" on stdin, so that the answers of several processes race
            await wait_for_go()
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


def _die_after_saving(app: Rig, channel: str) -> None:
    """The step that writes ``channel`` ends and its writes are saved; the process dies before the
    checkpoint that follows them."""
    saver = app.graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    put_writes = saver.aput_writes

    async def put_then_die(config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await put_writes(config, writes, task_id, task_path)
        if any(written == channel for written, _ in writes):
            os._exit(KILLED)

    saver.aput_writes = put_then_die  # type: ignore[method-assign]


def _cli(places: Path, hold: bool, args: list[str]) -> None:
    """The real command line, with every paper order placement logged to ``places`` (one line per
    call, any process); with ``hold`` the first waits for "go" on stdin before the broker takes it."""
    from bot.cli import app as cli_app
    from venues.paper import PaperBroker

    place = PaperBroker.place
    waiting = [hold]

    async def logged_place(broker: PaperBroker, request: OrderRequest) -> Order:
        if waiting and waiting.pop():
            print("placing", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        with places.open("a") as log:
            log.write(f"{os.getpid()} {request.client_order_id}\n")
        return await place(broker, request)

    PaperBroker.place = logged_place  # type: ignore[method-assign]
    cli_app(args, prog_name="tradeops")


def main() -> None:
    if sys.argv[1:2] == ["cli"]:
        _cli(Path(sys.argv[2]), sys.argv[3] == "hold", sys.argv[4:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("db_url")
    parser.add_argument("now")
    parser.add_argument("action", choices=["approve", "approve-and-die", "recover"])
    parser.add_argument("signal_id", nargs="?", default="")
    parser.add_argument("--wait", action="store_true")
    parser.add_argument("--die-at", choices=list(KILL_POINTS), default="order-taken")
    args = parser.parse_args()
    answer = asyncio.run(_child(args.db_url, args.now, args.action, args.signal_id, wait=args.wait, die_at=args.die_at))
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
