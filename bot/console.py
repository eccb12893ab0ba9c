"""The console transport: the local user (admin) types commands; replies are printed as text, or as
the structured reply in JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bot.command_table import answer_before_running
from bot.command_types import Caller, Reply
from storage.roles import Role

if TYPE_CHECKING:  # the command core, the application and prompt_toolkit load when a command runs
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

    from bot.services import Services

T = TypeVar("T")

CONSOLE_USER = Caller(platform="console", user_id=0, name="local console", role=Role.ADMIN)


def render(reply: Reply) -> str:
    parts = [reply.text]
    parts.extend(f"chart: {path}" for path in reply.images)
    ids = list(dict.fromkeys(b.signal_id for b in reply.buttons))
    parts.extend(f"[approve: /approve {i}]  [reject: /reject {i}]" for i in ids)
    return "\n".join(p for p in parts if p)


def _output(reply: Reply, as_json: bool) -> tuple[str, bool]:
    return (json.dumps(reply.to_json(), indent=2, default=str) if as_json else render(reply)), reply.ok


def answer_without_services(text: str, *, as_json: bool = False) -> tuple[str, int] | None:
    """The console user's reply to ``text`` when the command table alone gives it (/help, an
    unknown command, a malformed line), as ``run_command`` would print it; None when the command
    needs the application. Lets `tradeops chat -c /help` answer without opening the database."""
    assert CONSOLE_USER.role is not None
    reply = answer_before_running(CONSOLE_USER.role, text)
    return None if reply is None else (_output(reply, as_json)[0], exit_status(reply))


async def run_command(services: Services, text: str, *, as_json: bool = False) -> tuple[str, bool]:
    out, status = await run_command_status(services, text, as_json=as_json)
    return out, status == 0


async def run_command_status(services: Services, text: str, *, as_json: bool = False) -> tuple[str, int]:
    """The printed reply and the exit status of a one-shot command: 0 done, 2 bad input, 1 failed."""
    from bot.core import CommandCore

    reply = await CommandCore(services).handle(CONSOLE_USER, text)
    return _output(reply, as_json)[0], exit_status(reply)


def exit_status(reply: Reply) -> int:
    return 0 if reply.ok else 2 if reply.bad_input else 1


class ConsolePrompt:
    """Line editing and history (prompt_toolkit) for the console and the demo's questions.
    ``input``/``output`` are for tests (a pipe input, a dummy output); default: the terminal."""

    def __init__(self, history: Path | None = None, *, pipe: Input | None = None, output: Output | None = None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)) if history is not None else InMemoryHistory(),
            input=pipe,
            output=output,
        )
        self.yes_no: PromptSession[str] = PromptSession(input=pipe, output=output)
        self.asking = asyncio.Event()

    async def line(self, message: str) -> str:
        """The next line; KeyboardInterrupt on Ctrl-C, EOFError on Ctrl-D."""
        return await self.session.prompt_async(message)

    async def ask_yes_no(self, question: str) -> bool:
        """y or n, asked again on anything else; input typed before the question is dropped."""
        _drop_typed_ahead(self.yes_no.app.input)  # typed while the card printed: not an answer
        self.asking.set()  # from here on, what is typed answers (tests wait for this)
        while True:
            answer = (await self.yes_no.prompt_async(f"{question} [y/n] ")).strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False


def _drop_typed_ahead(source: Input) -> None:
    with contextlib.suppress(OSError, ValueError, termios.error):
        if sys.stdin is not None and sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)  # the terminal's own buffer
    with contextlib.suppress(OSError, ValueError):
        source.read_keys()  # what the input already holds (a pipe, a test)
        source.flush_keys()


async def run_cancellable(command: Awaitable[T]) -> T | None:
    """Await ``command``; Ctrl-C (SIGINT) meanwhile cancels it and returns None instead of ending
    the console. Where the loop cannot take signal handlers, Ctrl-C behaves as Python's default."""
    task = asyncio.ensure_future(command)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no Unix signals
        return await task
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # the console itself is being cancelled
            raise
        return None
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class PlainLines:
    """Commands read from standard input when it is not a terminal: one per line, no prompt."""

    async def line(self, message: str) -> str:
        text = await asyncio.to_thread(sys.stdin.readline)
        if not text:
            raise EOFError
        return text.rstrip("\r\n")


async def interactive(
    services: Services, *, echo: Callable[[str], None] = print, prompt: ConsolePrompt | PlainLines | None = None
) -> None:
    """The console: Up/Down walk the history (kept in the data dir), Ctrl-C clears the line or
    cancels the running command, Ctrl-D or /quit leaves."""
    from bot.core import CommandCore

    core = CommandCore(services)
    if prompt is None:
        # Line editing needs a terminal; from a pipe or a file (`tradeops chat < commands.txt`) the
        # lines are read as they are, escape sequences and all, never interpreted as keys.
        tty = sys.stdin is not None and sys.stdin.isatty()
        prompt = ConsolePrompt(services.settings.data_dir / "console_history") if tty else PlainLines()
    kind = "simulated" if services.simulated else "real"
    echo(f"tradeops console at {services.clock.now().isoformat()} ({kind} clock)")
    echo("type /help for the commands; Ctrl-C cancels, Ctrl-D or /quit leaves")
    while True:
        try:
            line = await prompt.line("tradeops> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt: a fresh line, as in a shell
        except EOFError:
            echo("")
            return
        if line.strip().lower() in ("/quit", "/exit", "quit", "exit"):
            return
        if not line.strip():
            continue
        reply = await run_cancellable(core.handle(CONSOLE_USER, line))
        echo("cancelled" if reply is None else render(reply))
