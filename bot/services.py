"""The running application's objects, built from Settings in one place and closed in one place."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from agent.deps import AgentConfig, AgentDeps, AutoApprove
from agent.policies import RulePolicy
from bot.settings import Settings
from bot.trading_days import load_trading_days
from bot.venues import build_venues, uses_live_data
from bot.wiring import open_database
from storage.chats import ChatStore
from storage.llm import LLMCache, usage_since
from storage.plans import PlanStore
from storage.signals import CLOCK_KEY, SignalStore
from storage.users import UserStore
from storage.watchlists import WatchlistSpec, WatchlistStore
from venues.base import LiveVenue, Venue
from venues.clock import Clock, RealClock, ScaledClock, SimulatedClock

if TYPE_CHECKING:  # the openai SDK and LangGraph (about a second each to import) load only when used
    from agent.llm.client import OpenAICompatClient
    from agent.runner import CardHook, DecisionHook, SignalRunner
    from scheduler.scan import Scanner
    from tools.ml import TrainedModel

log = logging.getLogger("tradeops.services")

# Where a replay clock starts when the data dir remembers none: mid-2021, where every shipped
# series overlaps (the SPY minutes begin on 2021-07-01).
REPLAY_START = datetime(2021, 7, 6, tzinfo=UTC)

DEFAULT_WATCHLISTS = (
    WatchlistSpec(name="crypto", venue="replay-crypto", symbols=("BTC/USD", "ETH/USDT"), timeframe="1h"),
    WatchlistSpec(name="cn-etf", venue="replay-cn", symbols=("510300.SH",), timeframe="15m"),
    WatchlistSpec(name="cn-stocks", venue="replay-cn", symbols=("600519.SH", "601318.SH", "000001.SZ"), timeframe="1d"),
    WatchlistSpec(name="us", venue="replay-us", symbols=("AMZN", "SPY"), timeframe="15m"),
)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    clock: Clock
    venues: dict[str, Venue]
    signals: SignalStore
    plans: PlanStore
    watchlists: WatchlistStore
    users: UserStore
    deps: AgentDeps
    charts_dir: Path
    chats: ChatStore
    llm: OpenAICompatClient | None = None
    # Set by `tradeops run`: called when a chat changes its summary settings, so the summary job
    # fires at the new times.
    on_schedule_change: Callable[[], None] | None = None
    # The agent graph's runner and the scanner; None when opened with agent=False (and nothing was
    # left to recover), for a one-shot command that reads records only.
    agent: tuple[SignalRunner, Scanner] | None = None

    @property
    def runner(self) -> SignalRunner:
        return self._agent()[0]

    @property
    def scanner(self) -> Scanner:
        return self._agent()[1]

    def _agent(self) -> tuple[SignalRunner, Scanner]:
        if self.agent is None:
            raise RuntimeError("these services were opened without the agent graph (open_services(agent=False))")
        return self.agent

    @property
    def simulated(self) -> bool:
        return isinstance(self.clock, SimulatedClock | ScaledClock)

    def remember_clock(self) -> None:
        """Store the simulated clock, so the next process on this data dir acts at this moment."""
        if self.simulated:
            now = self.clock.now()
            self.signals.set_value(CLOCK_KEY, {"mode": "simulated", "now": now.isoformat()}, at=now)

    def venue_calendar(self, venue: str) -> str:
        found = self.venues[venue]
        return str(getattr(found, "calendar", "24/7"))


def stored_clock(signals: SignalStore) -> SimulatedClock | None:
    value = signals.get_value(CLOCK_KEY)
    if value and value.get("mode") == "simulated":
        return SimulatedClock(datetime.fromisoformat(value["now"]))
    return None


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    auto_approve: AutoApprove | None = None,
    on_card: CardHook | None = None,
    on_decision: DecisionHook | None = None,
    one_shot: bool = False,
    with_lake: bool = True,
    llm_cache: LLMCache | None = None,
    agent: bool = True,
    with_graph: bool = True,
    fresh: bool = False,
) -> AsyncIterator[Services]:
    """Everything wired and the database migrated; the checkpointer closes on exit. ``one_shot``:
    for a command that runs once and exits (a small connection pool). ``on_card`` gets each new
    pending signal's card, ``on_decision`` each decision this process makes (agent/runner.py).
    ``with_lake=False`` leaves the bars lake's venue out (the demo walks the shipped data only).
    ``llm_cache``: the LLM response cache to use instead of this database's (a backtest keeps its
    answers in the data dir's database, not in its throwaway one). ``agent=False``: no agent graph
    (LangGraph takes about a second to import) unless a signal's walk is left to recover, for a
    one-shot command that only reads records (`tradeops chat -c /positions`); ``services.runner``
    and ``services.scanner`` are then a RuntimeError. ``with_graph=False``: the runner gets no agent
    graph and no checkpointer (a backtest of sma_cross, which decides outside the graph); a walk is
    then a RuntimeError and nothing is recovered. ``fresh``: the database was just created at the
    newest schema for this process alone (a backtest's): no migration check, no walk to recover,
    and the clock is not stored in it for a next process."""
    engine = await asyncio.to_thread(functools.partial(open_database, settings, one_shot=one_shot, migrate=not fresh))
    signals = SignalStore(engine)
    plans = PlanStore(engine)
    if clock is None:
        live = uses_live_data(settings)
        clock = RealClock() if live else stored_clock(signals) or SimulatedClock(REPLAY_START)
    venues = build_venues(settings, clock, engine, with_lake=with_lake)
    # A-share sessions past exchange-calendars' horizon: stored ones, refreshed from akshare when due.
    log.info("%s", await load_trading_days(engine, venues, clock.now(), fresh=fresh))
    config = AgentConfig(
        risk_profile=settings.risk_profile,
        slippage_bps=settings.paper_slippage_bps,
        max_drift_bps=settings.max_drift_bps,
        approval_timeout=settings.approval_timeout,
        auto_approve=auto_approve or AutoApprove(mode=settings.auto_approve),
        options=settings.spread_rules,
    )
    deps = AgentDeps(venues=venues, clock=clock, signals=signals, plans=plans, policy=RulePolicy(), config=config)

    def load_model(model_id: str | None = None) -> TrainedModel:  # the ML stack loads on first use
        from tools.model_registry import ModelRegistry

        return ModelRegistry(settings.models_dir).load(model_id)

    deps.load_model = load_model  # the LLM's model_score tool: the promoted model
    llm = llm_client(settings, clock, engine, cache=llm_cache) if settings.use_llm else None
    if llm is not None:
        from agent.llm.policy import LLMPolicy

        deps.policy = LLMPolicy(llm, deps, settings.llm_config)
    elif settings.policy == "ml":
        from agent.ml_policy import MLPolicy

        deps.policy = MLPolicy(lambda: load_model(settings.ml_model or None), deps)
    charts_dir = await asyncio.to_thread(_charts_dir, settings)
    services = Services(
        settings=settings,
        engine=engine,
        clock=clock,
        venues=venues,
        signals=signals,
        plans=plans,
        watchlists=WatchlistStore(engine),
        users=UserStore(engine),
        deps=deps,
        charts_dir=charts_dir,
        chats=ChatStore(engine),
        llm=llm,
    )
    async with contextlib.AsyncExitStack() as stack:
        if agent or (not fresh and signals.awaiting_resume()):
            from agent.runner import SignalRunner
            from scheduler.manage import PositionManager
            from scheduler.scan import DEFAULT_CONCURRENCY, Scanner

            graph = None
            if with_graph:
                from agent.graph import build_graph
                from storage.checkpoints import open_checkpointer

                checkpointer = await stack.enter_async_context(open_checkpointer(settings.resolved_database_url))
                graph = build_graph(deps, checkpointer)
            runner = SignalRunner(deps, graph, on_card=on_card, on_decision=on_decision)
            # With an LLM deciding, a scan's candidates are decided side by side, up to its concurrency.
            concurrency = settings.llm_concurrency if llm is not None else DEFAULT_CONCURRENCY
            scanner = Scanner(runner, PositionManager(venues, plans, signals, clock), concurrency=concurrency)
            services.agent = (runner, scanner)
            if with_graph and not fresh:
                await runner.recover()
        try:
            yield services
        finally:
            if not fresh:
                services.remember_clock()
            if llm is not None:
                await llm.aclose()
            await close_venues(venues)
            engine.dispose()


async def close_venues(venues: dict[str, Venue]) -> None:
    for venue in venues.values():
        if isinstance(venue, LiveVenue):
            try:
                await venue.aclose()
            except Exception:  # closing is best effort; the process is ending anyway
                log.warning("venue %s did not close cleanly", venue.name, exc_info=True)


class ConfigError(Exception):
    """A setting that makes the requested mode impossible; the message names what to set."""


LLM_VARIABLES = (
    "TRADEOPS_LLM_MODEL and TRADEOPS_LLM_API_KEY (or OPENAI_API_KEY), "
    "and TRADEOPS_LLM_BASE_URL for a non-OpenAI endpoint"
)


def llm_client(
    settings: Settings, clock: Clock, engine: Engine, *, cache: LLMCache | None = None
) -> OpenAICompatClient:
    """The LLM client of the configured endpoint, with the response cache (``cache``, or the one in
    ``engine``'s database) and today's usage for the token budget (the budget day is the UTC day of
    the clock)."""
    config = settings.llm_config
    if not config.configured:
        asked = "TRADEOPS_POLICY=llm" if settings.policy == "llm" else "the LLM policy"
        raise ConfigError(f"{asked} needs an LLM endpoint: set {LLM_VARIABLES}")
    from agent.llm.client import OpenAICompatClient

    def spent_today() -> int:
        now = clock.now()
        return usage_since(engine, now.replace(hour=0, minute=0, second=0, microsecond=0)).tokens

    return OpenAICompatClient(config, clock=clock, cache=cache or LLMCache(engine), usage=spent_today)


def _charts_dir(settings: Settings) -> Path:
    path = (settings.data_dir / "charts").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_watchlists(services: Services) -> list[WatchlistSpec]:
    now = services.clock.now()
    return [services.watchlists.ensure(spec, at=now) for spec in DEFAULT_WATCHLISTS]
