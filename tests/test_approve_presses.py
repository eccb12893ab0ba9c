"""Fifty presses on one pending card, racing across three processes on one database (issue 13's
proof): each press goes the way a chat's button press goes, through the command core as its
presser (``/approve ID``, ``/reject ID``; the role looked up at press time), with several traders,
an admin, a viewer and a stranger pressing. Exactly one answer wins: one approval row, one
``signal_*`` audit entry, one order and one plan when it approves (none when it rejects); every
other trader is told who decided what, and the viewer and the stranger are told why they may not.

The other processes run this module (``python -m tests.test_approve_presses``): each opens the
application's services on the same data dir and database, says "ready", and on "go" fires its
share of the presses at once (``asyncio.gather``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.core import Caller, CommandCore
from bot.services import Services, open_services, seed_watchlists
from bot.settings import Settings
from storage.users import Role
from tests.support import (
    ADMIN,
    SIGNAL_AT,
    STRANGER,
    TRADER,
    VIEWER,
    approval_rows,
    child_answer,
    child_env,
    entry_orders,
    plan_rows,
    release_together,
    wait_for_go,
)
from tests.test_core import eth_signal
from venues.clock import SimulatedClock

pytestmark = pytest.mark.usefixtures("hermetic")

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 3
PRESSES = 50

# Who presses: traders on both platforms and an admin decide; a viewer and a stranger are refused.
DECIDERS = [
    TRADER,
    ADMIN,
    *(Caller("telegram", 2001 + n, f"trader{n}") for n in range(4)),
    *(Caller("discord", 3001 + n, f"dtrader{n}") for n in range(2)),
]
REFUSED = (VIEWER, STRANGER)
ROLES = {TRADER.actor: Role.TRADER, ADMIN.actor: Role.ADMIN, VIEWER.actor: Role.VIEWER}


def _settings(data_dir: Path, db_url: str) -> Settings:
    return Settings(data_dir=data_dir, database_url=db_url, _env_file=None)  # type: ignore[call-arg]


@asynccontextmanager
async def _services(data_dir: Path, db_url: str, now: datetime) -> AsyncIterator[Services]:
    async with open_services(_settings(data_dir, db_url), clock=SimulatedClock(now)) as services:
        yield services


def _presses(signal_id: str, *, mixed: bool) -> list[dict[str, Any]]:
    """PRESSES presses, deciders and refused callers interleaved; with ``mixed`` every other
    decider's press rejects."""
    presses = []
    for n in range(PRESSES):
        refused = n % 10 == 4  # 5 of the 50: the viewer and the stranger, in turn
        caller = (VIEWER if n % 20 < 10 else STRANGER) if refused else DECIDERS[n % len(DECIDERS)]
        verb = "reject" if mixed and n % 2 else "approve"
        text = f"/{verb} {signal_id}" + (" too risky" if verb == "reject" else "")
        presses.append({"n": n, "platform": caller.platform, "user_id": caller.user_id, "verb": verb, "text": text})
    return presses


async def _spawn(data_dir: Path, db_url: str, presses: list[dict[str, Any]]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.test_approve_presses",
        str(data_dir),
        db_url,
        SIGNAL_AT.isoformat(),
        json.dumps(presses),
        cwd=ROOT,
        env=child_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("mixed", [False, True], ids=["approve", "approve-or-reject"])
async def test_fifty_presses_across_three_processes_decide_once(
    engine: Engine, db_url: str, tmp_path: Path, mixed: bool
) -> None:
    data_dir = tmp_path / "data"
    async with _services(data_dir, db_url, SIGNAL_AT) as services:
        seed_watchlists(services)
        for caller in [*DECIDERS, VIEWER]:
            role = ROLES.get(caller.actor, Role.TRADER)
            services.users.grant(caller.platform, caller.user_id, role, at=SIGNAL_AT, display_name=caller.name)
        signal_id = await eth_signal(CommandCore(services))

    presses = _presses(signal_id, mixed=mixed)
    shares = [presses[k::PROCESSES] for k in range(PROCESSES)]  # 17, 17 and 16
    children = [await _spawn(data_dir, db_url, share) for share in shares]
    await release_together(children)
    replies = {r["n"]: r for _, answer in await asyncio.gather(*(child_answer(c) for c in children)) for r in answer}
    assert sorted(replies) == list(range(PRESSES))

    actor_of = {p["n"]: f"{p['platform']}:{p['user_id']}" for p in presses}
    refused = [p for p in presses if actor_of[p["n"]] in {c.actor for c in REFUSED}]
    decided = [p for p in presses if p not in refused]
    assert len(refused) == 5 and {p["platform"] for p in decided} == {"telegram", "discord"}
    for press in refused:
        reply, actor = replies[press["n"]], actor_of[press["n"]]
        why = (
            f"refused: /{press['verb']} needs the trader role; you are a viewer."
            if actor == VIEWER.actor
            else f"You are not allowed to use this bot. Ask an admin to add your numeric id ({actor})."
        )
        assert (reply["ok"], reply["text"]) == (False, why)

    winners = [p for p in decided if replies[p["n"]]["ok"]]
    assert len(winners) == 1, [replies[p["n"]] for p in winners]
    (winner,) = winners
    decision, actor = ("rejected" if winner["verb"] == "reject" else "approved"), actor_of[winner["n"]]
    assert replies[winner["n"]]["text"].startswith(f"{signal_id} {decision} by {actor}")
    for press in decided:
        if press is not winner:  # told it was decided, what and by whom
            reply = replies[press["n"]]
            assert not reply["ok"] and reply["text"].startswith(f"already decided: {signal_id} {decision} by {actor}")

    async with _services(data_dir, db_url, SIGNAL_AT) as services:
        (approval,) = approval_rows(services.engine, signal_id)
        assert (approval.decision, approval.actor) == (decision, actor)
        history = [change.to_status for change in services.signals.history(signal_id)]
        audit = [
            (e.action, e.actor)
            for e in services.signals.audit_log(limit=500)
            if e.target == signal_id and e.action.startswith("signal_")
        ]
        assert audit == [(f"signal_{decision}", actor), ("signal_pending", "graph")]
        orders, plans = entry_orders(services.engine, signal_id), plan_rows(services.engine, signal_id)
        if decision == "approved":
            assert history == ["pending", "approved", "executed"]
            assert [o.client_order_id for o in orders] == [signal_id] and len(plans) == 1
        else:
            assert history == ["pending", "rejected"]
            assert orders == [] and plans == []
            assert await services.venues["replay-crypto"].broker_required().order(signal_id) is None


# --- the child process ---


async def _child(data_dir: Path, db_url: str, now: datetime, presses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with _services(data_dir, db_url, now) as services:
        core = CommandCore(services)
        await wait_for_go()
        replies = await asyncio.gather(
            *(core.handle(Caller(p["platform"], p["user_id"], chat_id=p["user_id"]), p["text"]) for p in presses)
        )
    return [{"n": p["n"], "ok": r.ok, "text": r.text} for p, r in zip(presses, replies, strict=True)]


def main() -> None:
    data_dir, db_url, now, presses = sys.argv[1:5]
    answer = asyncio.run(_child(Path(data_dir), db_url, datetime.fromisoformat(now), json.loads(presses)))
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
