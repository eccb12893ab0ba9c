"""The console transport: the local user (admin) types commands; replies are printed as text, or as
the structured reply in JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from bot.core import Caller, CommandCore, Reply
from bot.services import Services
from storage.users import Role

CONSOLE_USER = Caller(platform="console", user_id=0, name="local console", role=Role.ADMIN)


def render(reply: Reply) -> str:
    parts = [reply.text]
    parts.extend(f"chart: {path}" for path in reply.images)
    ids = list(dict.fromkeys(b.signal_id for b in reply.buttons))
    parts.extend(f"[approve: /approve {i}]  [reject: /reject {i}]" for i in ids)
    return "\n".join(p for p in parts if p)


async def run_command(services: Services, text: str, *, as_json: bool = False) -> tuple[str, bool]:
    reply = await CommandCore(services).handle(CONSOLE_USER, text)
    out = json.dumps(reply.to_json(), indent=2, default=str) if as_json else render(reply)
    return out, reply.ok


async def interactive(services: Services, *, echo: Callable[[str], None] = print) -> None:
    core = CommandCore(services)
    kind = "simulated" if services.simulated else "real"
    echo(f"tradeops console at {services.clock.now().isoformat()} ({kind} clock)")
    echo("type /help for the commands, /quit to leave")
    while True:
        try:
            line = await asyncio.to_thread(input, "tradeops> ")
        except (EOFError, KeyboardInterrupt):
            echo("")
            return
        if line.strip().lower() in ("/quit", "/exit", "quit", "exit"):
            return
        if not line.strip():
            continue
        echo(render(await core.handle(CONSOLE_USER, line)))
