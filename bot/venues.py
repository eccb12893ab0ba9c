"""Which venues this process trades on, built from settings in one place.

Two sources of market data, never mixed in one process (they run on different clocks):

- replay: the shipped recorded bars (venues/replay) on a simulated clock, each with a PaperBroker;
  the offline default (`tradeops demo`, `tradeops run --replay`, tests).
- live: every real venue whose settings are present (ccxt, alpaca, akshare; venues/adapters), on
  the real clock. Orders go to a venue's own paper/sandbox API where it has one and keys are set,
  else to a PaperBroker that applies the venue's real rules. No path reaches a live account.

``TRADEOPS_MARKET_DATA`` picks one: ``auto`` (live when a real venue is configured, else replay),
``replay`` or ``live``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import Engine

from bot.logs import install_redaction, register_secret
from bot.settings import Settings
from storage.lake import BarsLake
from storage.paper_ledger import SqlPaperLedger
from venues.base import Venue
from venues.clock import Clock
from venues.lake import LakeVenue
from venues.paper import PaperBroker
from venues.replay import MARKETS, ReplayVenue


class VenueConfigError(Exception):
    """Settings that cannot make the requested venues; the message names what to set."""


@dataclass(frozen=True)
class LiveVenueBuilder:
    """One kind of real venue: ``configured`` says whether its settings are present; ``build`` makes
    the venue (with its broker attached) from settings, the clock, and the paper ledger."""

    kind: str  # "ccxt", "alpaca", "akshare"
    variables: str  # what a user sets to configure it, for messages
    configured: Callable[[Settings], bool]
    build: Callable[[Settings, Clock, SqlPaperLedger], Venue]


def _build_alpaca(settings: Settings, clock: Clock, ledger: SqlPaperLedger) -> Venue:
    from venues.adapters.alpaca.broker import AlpacaBroker
    from venues.adapters.alpaca.config import AlpacaConfigError
    from venues.adapters.alpaca.venue import AlpacaVenue

    try:
        config = settings.alpaca_config
    except AlpacaConfigError as exc:
        raise VenueConfigError(str(exc)) from None
    register_secret(config.api_key)
    register_secret(config.secret_key)
    venue = AlpacaVenue(config, clock)
    # Entries go to Alpaca's paper account; exits rest in the ledger and are watched on Alpaca's bars.
    venue.broker = AlpacaBroker(venue.name, venue.api, venue, clock, ledger)
    return venue


ALPACA = LiveVenueBuilder(
    kind="alpaca",
    variables="TRADEOPS_ALPACA_API_KEY and TRADEOPS_ALPACA_SECRET_KEY",
    configured=lambda settings: settings.alpaca_configured,
    build=_build_alpaca,
)


def _build_akshare(settings: Settings, clock: Clock, ledger: SqlPaperLedger) -> Venue:
    from venues.adapters.akshare import AkshareVenue

    venue = AkshareVenue(settings.akshare_config, clock)
    # No paper API at Eastmoney: orders go to the PaperBroker with the A-share and SHFE rules.
    venue.broker = PaperBroker(venue.name, venue, clock, ledger, settings.paper_config(["CNY"]))
    return venue


AKSHARE = LiveVenueBuilder("akshare", "TRADEOPS_AKSHARE=true", lambda settings: settings.akshare, _build_akshare)


def _build_ccxt(settings: Settings, clock: Clock, ledger: SqlPaperLedger) -> Venue:
    """The ccxt venue. With keys (sandbox required, checked by CcxtConfig) entries go to the
    exchange's test environment and exits stay with a PaperBroker; without keys every order goes to
    the PaperBroker on the exchange's real rules."""
    from venues.adapters.ccxt import CcxtVenue, SandboxBroker
    from venues.adapters.ccxt.config import CcxtConfigError

    try:
        config = settings.ccxt_config
    except CcxtConfigError as exc:
        raise VenueConfigError(str(exc)) from None
    # A proxy's password in TRADEOPS_CCXT_API_URL (http://user:password@host) is quoted by ccxt's
    # error messages with every URL it called: a secret like the keys, in logs and in chats.
    proxy_password = urlsplit(config.api_url).password if config.api_url else None
    for value in (config.api_key, config.secret, config.password, proxy_password):
        register_secret(value)
    if proxy_password:
        install_redaction()
    if config.has_keys:
        install_redaction()
        # ccxt logs each request's headers (the key, the passphrase, the signature) at DEBUG.
        ccxt_log = logging.getLogger("ccxt")
        ccxt_log.setLevel(max(logging.INFO, ccxt_log.level))
    venue = CcxtVenue(config, clock)
    # Cash in each currency TRADEOPS_PAPER_CASH_USDT / _CCXT funds; markets settling in another
    # one are skipped by the scan with the setting named (Account.unfunded).
    paper = PaperBroker(venue.name, venue, clock, ledger, settings.ccxt_paper_config())
    venue.broker = SandboxBroker(venue, paper) if config.has_keys else paper
    return venue


CCXT_BUILDER = LiveVenueBuilder(
    kind="ccxt",
    variables="TRADEOPS_CCXT_EXCHANGE (keys optional: TRADEOPS_CCXT_API_KEY/_SECRET/_PASSWORD "
    "with TRADEOPS_CCXT_SANDBOX=true)",
    configured=lambda settings: bool(settings.ccxt_exchange),
    build=_build_ccxt,
)

# Each adapter adds its builder here (bot/ may read settings; venues/adapters receive typed configs).
LIVE_BUILDERS: tuple[LiveVenueBuilder, ...] = (CCXT_BUILDER, ALPACA, AKSHARE)


def configured_live(settings: Settings) -> list[LiveVenueBuilder]:
    return [builder for builder in LIVE_BUILDERS if builder.configured(settings)]


def uses_live_data(settings: Settings) -> bool:
    """Whether this process runs on live venues (real clock) rather than replay (simulated clock).
    Raises VenueConfigError when ``live`` is asked for and no real venue is configured."""
    if settings.market_data == "replay":
        return False
    live = bool(configured_live(settings))
    if settings.market_data == "live" and not live:
        wanted = "; ".join(f"{b.kind}: {b.variables}" for b in LIVE_BUILDERS) or "none is built yet"
        raise VenueConfigError(f"TRADEOPS_MARKET_DATA=live but no real venue is configured (set one of {wanted})")
    return live


def replay_venues(settings: Settings, clock: Clock, engine: Engine) -> dict[str, Venue]:
    ledger = SqlPaperLedger(engine)
    venues: dict[str, Venue] = {}
    for key, market in MARKETS.items():
        venue = ReplayVenue(key, clock)
        currencies = list(dict.fromkeys(s.instrument.currency for s in market.series))
        venue.broker = PaperBroker(venue.name, venue, clock, ledger, settings.paper_config(currencies))
        venues[venue.name] = venue
    return venues


def live_venues(settings: Settings, clock: Clock, engine: Engine) -> dict[str, Venue]:
    ledger = SqlPaperLedger(engine)
    venues: dict[str, Venue] = {}
    for builder in configured_live(settings):
        venue = builder.build(settings, clock, ledger)
        if venue.name in venues:
            raise VenueConfigError(f"two configured venues are both named {venue.name!r}")
        venues[venue.name] = venue
    return venues


def lake_venue(settings: Settings, clock: Clock, engine: Engine) -> LakeVenue | None:
    """The venue over the bars lake in the data dir (`tradeops backfill`), with a paper broker;
    None while the lake holds no bars."""
    series = BarsLake(settings.lake_dir).lake_series()
    if not series:
        return None
    venue = LakeVenue(series, clock)
    currencies = list(dict.fromkeys(s.instrument.currency for s in series))
    venue.broker = PaperBroker(venue.name, venue, clock, SqlPaperLedger(engine), settings.paper_config(currencies))
    return venue


def build_venues(settings: Settings, clock: Clock, engine: Engine, *, with_lake: bool = True) -> dict[str, Venue]:
    """The venues of this process: live ones, or the replay ones first (a bare symbol resolves to
    the first venue that lists it, so replay stays the default) then "lake" when the lake has bars
    (and ``with_lake``)."""
    if uses_live_data(settings):
        return live_venues(settings, clock, engine)
    venues = replay_venues(settings, clock, engine)
    lake = lake_venue(settings, clock, engine) if with_lake else None
    if lake is not None:
        venues[lake.name] = lake
    return venues


def history_sources(settings: Settings, clock: Clock, engine: Engine) -> dict[str, Venue]:
    """Every venue `tradeops backfill` can download from: the replay ones and every configured real
    venue, whatever TRADEOPS_MARKET_DATA says (the lake itself is where backfill writes)."""
    return {**replay_venues(settings, clock, engine), **live_venues(settings, clock, engine)}
