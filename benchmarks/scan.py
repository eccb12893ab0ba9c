"""The whole scan path on a 1,000-symbol universe: screen -> graph (RulePolicy) -> card -> approval
-> paper order, on SQLite with the real LangGraph checkpointer, as `tradeops` runs it.

Universe: benchmarks/universe.py (offset, scaled copies of the eight shipped real series). Scans run
every 30 minutes from 2021-08-12T14:00Z (US session; crypto on) with the "high" risk profile so
that most candidates reach the approval step. Printed figures:

- screen CPU ms per screened symbol (scan CPU without the graph / universe size; target <= 1 ms);
- graph ms per candidate (gather, decide, risk, pause at the approval, pending row stored);
- tick -> rendered card: for a one-symbol watchlist, from the scan tick to the card's text (target
  <= 50 ms), and to its chart PNG (rendered off the event loop while the text goes out); and, for
  information, from the tick of the 1,000-symbol scan to its first card;
- approve -> placed order: `SignalRunner.decide` until the paper order is stored (target <= 20 ms).

Run from the repo root: `.venv/bin/python benchmarks/scan.py`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.deps import AgentConfig, AgentDeps  # noqa: E402
from agent.graph import build_graph  # noqa: E402
from agent.policies import RulePolicy  # noqa: E402
from agent.runner import SignalRunner  # noqa: E402
from benchmarks.universe import build_universe  # noqa: E402
from bot.render import card_chart, card_text  # noqa: E402
from scheduler.manage import PositionManager  # noqa: E402
from scheduler.scan import Scanner, signal_id_for  # noqa: E402
from storage.checkpoints import open_checkpointer  # noqa: E402
from storage.db import make_engine, sqlite_url  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.paper_ledger import SqlPaperLedger  # noqa: E402
from storage.plans import PlanStore  # noqa: E402
from storage.signals import SignalStatus, SignalStore  # noqa: E402
from storage.watchlists import WatchlistSpec  # noqa: E402
from tools.screen import screen  # noqa: E402
from venues.base import BrokeredVenue  # noqa: E402
from venues.clock import SimulatedClock  # noqa: E402
from venues.paper import PaperBroker, PaperBrokerConfig  # noqa: E402

SYMBOLS = 1_000
START = datetime(2021, 8, 12, 14, 0, 5, tzinfo=UTC)
SCANS = 8


class UniverseVenue(BrokeredVenue):
    """The universe's market data with a paper broker attached, like a replay venue."""

    def __init__(self, market: Any) -> None:
        self._market = market
        self.name = market.name
        self.calendar = "24/7"

    async def instruments(self) -> Any:
        return await self._market.instruments()

    async def instrument(self, symbol: str) -> Any:
        return await self._market.instrument(symbol)

    async def snapshot(self, symbols: Sequence[str]) -> Any:
        return await self._market.snapshot(symbols)

    async def bars(self, symbol: str, timeframe: str, **kwargs: Any) -> Any:
        return await self._market.bars(symbol, timeframe, **kwargs)


def ms(seconds: float) -> float:
    return seconds * 1000


async def main() -> None:
    clock = SimulatedClock(START)
    venue = UniverseVenue(build_universe(SYMBOLS, clock))
    symbols = tuple(i.symbol for i in await venue.instruments())
    with tempfile.TemporaryDirectory() as tmp:
        url = sqlite_url(Path(tmp) / "bench.db")
        engine = make_engine(url)
        upgrade(engine)
        cash = {"USD": Decimal(10_000_000), "USDT": Decimal(10_000_000), "CNY": Decimal(50_000_000)}
        venue.broker = PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), PaperBrokerConfig(cash))
        signals, plans = SignalStore(engine), PlanStore(engine)
        deps = AgentDeps(
            venues={venue.name: venue},
            clock=clock,
            signals=signals,
            plans=plans,
            policy=RulePolicy(),
            config=AgentConfig(risk_profile="high"),
        )
        watchlist = WatchlistSpec(name="universe", venue=venue.name, symbols=symbols, timeframe="15m")
        screen_cpu: list[float] = []
        graph_ms: list[float] = []
        tick_to_text: list[float] = []
        universe_to_text: list[float] = []
        tick_to_chart: list[float] = []
        approve_ms: list[float] = []
        candidates = pending = 0
        async with open_checkpointer(url) as saver:
            runner = SignalRunner(deps, build_graph(deps, saver))
            scanner = Scanner(runner, PositionManager(deps.venues, plans, signals, clock))
            config = scanner.screen_config(watchlist)

            async def single_symbol_tick(symbol: str, i: int) -> None:
                """A watchlist of one symbol at the same moment: the per-scan overhead from the
                tick to the card, without the universe-sized screen."""
                tick = time.perf_counter()
                result = await screen(venue, [symbol], config, now=clock.now())
                if not result.candidates:
                    return
                candidate = result.candidates[0]
                walk = await runner.start(
                    signal_id=signal_id_for(f"single-{i}", symbol, candidate.bar_close),
                    venue=venue.name,
                    symbol=symbol,
                    timeframe=candidate.timeframe,
                    candidate=candidate,
                )
                if walk.card is None or walk.status != SignalStatus.PENDING.value:
                    return
                card_text(walk.card)
                tick_to_text.append(ms(time.perf_counter() - tick))
                await card_chart(venue, walk.card, Path(tmp), "24/7")
                tick_to_chart.append(ms(time.perf_counter() - tick))
                await runner.decide(walk.signal_id, "rejected", actor="bench")

            warm = await screen(venue, symbols, config, now=clock.now())  # warm the venue's caches once
            if warm.candidates:  # and the graph's first walk (imports, compiled nodes), not measured
                first = warm.candidates[0]
                walk = await runner.start(
                    signal_id="warmup",
                    venue=venue.name,
                    symbol=first.symbol,
                    timeframe=first.timeframe,
                    candidate=first,
                )
                if walk.status == SignalStatus.PENDING.value:
                    await runner.decide("warmup", "rejected", actor="bench")
            for i in range(SCANS):
                clock.advance_to(START + timedelta(minutes=30 * i))
                tick = time.perf_counter()
                cpu0 = time.process_time()
                result = await screen(venue, symbols, config, now=clock.now())
                screen_cpu.append(time.process_time() - cpu0)
                candidates += len(result.candidates)
                if result.candidates:
                    # Before the universe's walk of that symbol: a venue and symbol have one pending
                    # signal at a time, so the one-symbol watchlist's card must come and go first.
                    paused = time.perf_counter()
                    symbol = result.candidates[0].symbol
                    await screen(venue, [symbol], config, now=clock.now())  # its bar files, loaded once
                    await single_symbol_tick(symbol, i)
                    tick += time.perf_counter() - paused  # not part of the universe's tick
                first_card = True
                for candidate in result.candidates:
                    started = time.perf_counter()
                    walk = await runner.start(
                        signal_id=signal_id_for(watchlist.name, candidate.symbol, candidate.bar_close),
                        venue=venue.name,
                        symbol=candidate.symbol,
                        timeframe=candidate.timeframe,
                        candidate=candidate,
                        watchlist=watchlist.name,
                    )
                    graph_ms.append(ms(time.perf_counter() - started))
                    if walk.status != SignalStatus.PENDING.value or walk.card is None:
                        continue
                    pending += 1
                    if card_text(walk.card) and first_card:
                        universe_to_text.append(ms(time.perf_counter() - tick))
                        first_card = False

                    started = time.perf_counter()
                    decided = await runner.decide(walk.signal_id, "approved", actor="bench")
                    approve_ms.append(ms(time.perf_counter() - started))
                    assert decided.status in (SignalStatus.EXECUTED.value, SignalStatus.ABORTED.value), decided
        engine.dispose()

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else "n/a"

    print(
        f"scan: {SYMBOLS} symbols x {SCANS} scans, {candidates} candidates, {pending} reached approval\n"
        f"  screen: {statistics.median(screen_cpu) / SYMBOLS * 1000:.3f} ms cpu per screened symbol (target <= 1 ms)\n"
        f"  graph: {med(graph_ms)} ms per candidate (median, gather..approval pause incl. checkpoint writes)\n"
        f"  tick -> rendered card (one-symbol watchlist): {med(tick_to_text)} ms median (target <= 50 ms); "
        f"with its chart PNG: {med(tick_to_chart)} ms\n"
        f"  tick -> first card of the {SYMBOLS}-symbol scan: {med(universe_to_text)} ms median "
        "(the screen of the whole universe included)\n"
        f"  approve -> placed order: {med(approve_ms)} ms median, max {max(approve_ms, default=0):.1f} ms "
        f"(target <= 20 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
