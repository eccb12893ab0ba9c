"""`tradeops doctor`: each check says what it found, in words a user can act on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.data_dir import DataDirError, check_data_dir
from bot.render import plural
from bot.settings import Settings

# exchange-calendars ships sessions about a year ahead; scans stop when a calendar runs out, so
# the doctor warns this many days before.
CALENDAR_WARN_DAYS_AHEAD = 60


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # ok for now, but needs attention ("[warn]"; not a failure)


class Problem(Exception):
    """A failed check already worded for the user (what is wrong, what to do)."""


def _run(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except (Problem, DataDirError) as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # a doctor reports every failure instead of stopping at the first
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def telegram_probe(settings: Settings, token: str) -> str:
    """getMe with the configured token, through TRADEOPS_TELEGRAM_API_URL when set, then
    getWebhookInfo: the mode (polling or webhook), the URL Telegram posts to and its last delivery
    error. Nothing it returns or raises contains the token or the webhook secret."""
    import asyncio

    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError, TelegramError

    from bot.telegram_render import api_urls
    from bot.telegram_webhook import describe, webhook_config

    try:
        base_url, file_url = api_urls(settings.telegram_api_url)
        webhook_config(settings, token)
    except ValueError as exc:
        raise Problem(str(exc)) from None

    async def get_me() -> str:
        async with Bot(token, base_url=base_url, base_file_url=file_url) as bot:  # initialize() calls getMe
            info = await bot.get_webhook_info()
            return f"@{bot.username} (getMe at {base_url}); {describe(info, settings.telegram_webhook_url)}"

    def hidden(what: object) -> str:
        text = str(what).replace(token, "<token>")
        key = token.partition(":")[2]
        return text.replace(key, "<token>") if key else text

    try:
        found = hidden(asyncio.run(get_me()))  # a webhook URL someone else set may carry the token
    except InvalidToken:
        raise Problem(
            f"Telegram refused the token at {base_url}: set TRADEOPS_TELEGRAM_TOKEN to the token @BotFather "
            "gave you (/mybots, API Token shows it again)"
        ) from None
    except NetworkError as exc:
        raise Problem(
            f"no answer from {base_url} ({hidden(exc)}): check the network, a proxy, or TRADEOPS_TELEGRAM_API_URL"
        ) from None
    except TelegramError as exc:
        raise Problem(f"getMe failed at {base_url}: {hidden(exc)}") from None
    return f"the token belongs to {found}"


def venue_checks(settings: Settings) -> Iterator[Check]:
    """Each configured real venue, built as the bot builds it and asked what answers."""
    from bot.venues import LIVE_BUILDERS, configured_live, uses_live_data

    live = configured_live(settings)
    if not live:
        kinds = "; ".join(f"{b.kind}: {b.variables}" for b in LIVE_BUILDERS)
        yield Check(
            "venues",
            True,
            "none configured: the shipped replay data is the market" + (f" (to add one, set {kinds})" if kinds else ""),
        )
        return
    try:
        mode = "live" if uses_live_data(settings) else "replay (TRADEOPS_MARKET_DATA=replay)"
    except Exception as exc:
        yield Check("venues", False, str(exc))
        return
    yield Check("market data", True, mode)
    for builder in live:
        yield _run(f"venue {builder.kind}", lambda b=builder: _venue_probe(settings, b))  # type: ignore[misc]


def _venue_probe(settings: Settings, builder: object) -> str:
    import asyncio

    from bot.logs import redact
    from bot.venues import LiveVenueBuilder
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.paper_ledger import SqlPaperLedger
    from venues.base import LiveVenue
    from venues.clock import RealClock
    from venues.errors import VenueError

    assert isinstance(builder, LiveVenueBuilder)
    # The probe's paper ledger lives in memory: the doctor creates nothing in the data dir.
    engine = make_engine("sqlite://")
    upgrade(engine)

    async def probe() -> str:
        venue = builder.build(settings, RealClock(), SqlPaperLedger(engine))
        try:
            if not isinstance(venue, LiveVenue):
                return f"{venue.name}: built"
            return f"{venue.name}: {await venue.health()}"
        finally:
            if isinstance(venue, LiveVenue):
                await venue.aclose()

    try:
        return asyncio.run(probe())
    except VenueError as exc:
        raise Problem(redact(str(exc))) from None  # a venue's error may quote a URL with its credentials
    finally:
        engine.dispose()


DISCORD_TIMEOUT = 10.0  # seconds per Discord API request


def discord_probe(settings: Settings, token: str) -> str:
    """GET /users/@me and /applications/@me with the bot token, through TRADEOPS_DISCORD_API_URL when
    set (and, with TRADEOPS_DISCORD_GUILD_ID, the server's commands: the applications.commands
    scope there). Says who the bot is and how to invite it; nothing it returns or raises contains
    the token (it travels in a header only)."""
    import discord
    import httpx

    from bot.discord_render import api_base

    try:
        base = api_base(settings.discord_api_url)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    # What the bot does in a channel: see it, send cards (an embed and the chart file). 52224, as in the README.
    permissions = discord.Permissions(view_channel=True, send_messages=True, embed_links=True, attach_files=True)

    def invite(app_id: int) -> str:
        return discord.utils.oauth_url(app_id, permissions=permissions, scopes=("bot", "applications.commands"))

    with httpx.Client(headers={"Authorization": f"Bot {token}"}, timeout=DISCORD_TIMEOUT) as http:

        def get(path: str) -> Any:
            try:
                response = http.get(base + path)
            except httpx.HTTPError as exc:
                raise Problem(
                    f"no answer from {base} ({type(exc).__name__}): check the network, a proxy, "
                    "or TRADEOPS_DISCORD_API_URL"
                ) from None
            if response.status_code == 401:
                raise Problem(
                    f"Discord refused the token at {base}: set TRADEOPS_DISCORD_TOKEN to the bot token from the "
                    "Developer Portal (Applications > your app > Bot > Reset Token)"
                )
            if response.is_error:
                raise Problem(f"GET {path} failed at {base}: HTTP {response.status_code} {response.text[:200]}")
            return response.json()

        user = get("/users/@me")
        app = get("/applications/@me")
        found = (
            f"the token belongs to {user.get('username')} (bot user {user.get('id')}) of application "
            f'{app.get("id")} "{app.get("name")}" (GET /users/@me and /applications/@me at {base})'
        )
        url = invite(int(app["id"]))
        if app.get("interactions_endpoint_url"):
            raise Problem(
                f"{found}; but the application has an Interactions Endpoint URL set, so Discord sends slash commands "
                "and button presses there, not to the bot: clear it in the Developer Portal (General Information)"
            )
        guild_id = settings.discord_guild_id
        if guild_id:
            try:
                commands = get(f"/applications/{app['id']}/guilds/{guild_id}/commands")
            except Problem as exc:
                raise Problem(
                    f"{found}; but it cannot register slash commands in server {guild_id} ({exc}): invite the bot "
                    f"there with the bot and applications.commands scopes: {url}"
                ) from None
            found += f"; slash commands can be registered in server {guild_id} ({len(commands)} now)"
    return f"{found}; invite it to a server with the bot and applications.commands scopes: {url}"


def allowlist_probe(settings: Settings, platform: str) -> str:
    """The allowlist as `tradeops run` will seed it: a malformed one fails here as it would there,
    and one that leaves nobody able to use the bot (none listed, none in the database) fails too."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.allowlist import AllowlistError, parse_allowed_users
    from bot.wiring import open_database
    from storage.users import UserStore

    setting = f"TRADEOPS_{platform.upper()}_ALLOWED_USERS"
    text = settings.telegram_allowed_users if platform == "telegram" else settings.discord_allowed_users
    try:
        allowed = parse_allowed_users(text, setting)
    except AllowlistError as exc:
        raise Problem(str(exc)) from None
    try:
        engine = open_database(settings, read_only=True)
        try:
            stored = [u for u in UserStore(engine).all() if u.platform == platform]
        finally:
            engine.dispose()
    except (SQLAlchemyError, DataDirError):
        stored = []  # a database not created yet holds nobody
    listed = f"{len(allowed)} listed" + (
        f" ({', '.join(sorted({r.value for r in allowed.values()}))})" if allowed else ""
    )
    if not allowed and not stored:
        raise Problem(
            f"{setting} is empty and the database holds no {platform} user: nobody may use the bot; "
            f"add yourself, e.g. {setting}=123456789:admin"
        )
    return f"{listed}; {len(stored)} in the database"


def data_dir_check(settings: Settings) -> Check:
    """The data dir as the commands will find it; nothing is created."""
    path = settings.data_dir.expanduser().resolve()
    try:
        check_data_dir(path, create=False)
    except DataDirError as exc:
        return Check("data dir", False, str(exc))
    if not path.exists():
        return Check("data dir", True, f"{path} does not exist yet: the first command that writes creates it")
    return Check("data dir", True, str(path))


def database_check(settings: Settings) -> Check:
    """Reachable, schema revision, and for SQLite ``PRAGMA quick_check`` (damaged pages), on a
    read-only connection: a missing database is reported, not created."""
    from sqlalchemy.exc import DBAPIError

    from bot.errors import describe_failure
    from bot.wiring import open_database, sqlite_file
    from storage.db import DatabaseUrlError, check_database_url, redact_url
    from storage.migrate import current_revision, head_revision

    url = settings.resolved_database_url
    try:
        check_database_url(url)
    except DatabaseUrlError as exc:
        return Check("database", False, str(exc))
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return Check(
            "database", True, f"no database at {path} yet: `tradeops db upgrade` (or any command) creates it", True
        )

    def probe() -> str:
        engine = open_database(settings, read_only=True)
        try:
            started = time.perf_counter()
            revision = current_revision(engine)
            elapsed = (time.perf_counter() - started) * 1000
        except DBAPIError as exc:
            engine.dispose()
            failure = describe_failure(exc, database_url=url, data_dir=settings.data_dir)
            raise Problem(failure.message if failure else f"{redact_url(url)}: {exc.orig}") from None
        damaged: list[str] = []
        try:
            if path is not None:
                with engine.connect() as connection:
                    found = [str(row[0]) for row in connection.exec_driver_sql("PRAGMA quick_check").fetchall()]
                damaged = [line for line in found if line != "ok"]
        except DBAPIError as exc:  # damage bad enough that the check itself stops
            damaged = [" ".join(str(exc.orig).split())]
        finally:
            engine.dispose()
        if damaged:
            raise Problem(
                f"{path} is damaged: PRAGMA quick_check found {len(damaged)} problem(s), first: {damaged[0][:200]}; "
                "restore it from a backup (or dump what is readable with sqlite3's .recover)"
            )
        head = head_revision()
        state = "schema up to date" if revision == head else f"schema at {revision or 'none'}, latest {head}"
        checked = "; quick_check ok" if path is not None else ""
        return f"{redact_url(url)} answers in {elapsed:.0f} ms; {state}{checked}"

    return _run("database", probe)


def calendars_check(settings: Settings, today: date) -> Check:
    """The last known session of each market calendar: a warning within
    CALENDAR_WARN_DAYS_AHEAD days of ``today``, a failure once it has passed."""
    from bot.trading_days import CALENDAR, assumption_warning, register_stored
    from bot.wiring import open_database
    from venues import calendars as cals

    try:
        engine = open_database(settings, read_only=True)
        try:
            register_stored(engine, CALENDAR)  # A-share trading days stored from akshare's calendar
        finally:
            engine.dispose()
    except Exception:
        pass  # no database (yet), or one without the table: the library's sessions alone
    parts, soon = [], []
    for name in ("XSHG", "XNYS", "24/7"):
        last, source = cals.known_until(name) if name != "24/7" else (cals.library_last_session(name), "")
        days = (last - today).days
        fix = assumption_warning() if name == CALENDAR else "update exchange-calendars"
        if days < 0:
            return Check("market calendars", False, f"{name} sessions ended on {last.isoformat()}. {fix}")
        if days < CALENDAR_WARN_DAYS_AHEAD:
            soon.append(f"{name} sessions end on {last.isoformat()}, {days} days from now: {fix}")
        parts.append(f"{name} until {last.isoformat()}" + (f" ({source})" if source else ""))
    if soon:
        return Check("market calendars", True, "; ".join(soon), warning=True)
    return Check("market calendars", True, ", ".join(parts))


def llm_policy_check(settings: Settings) -> Check | None:
    """TRADEOPS_POLICY=llm without an endpoint cannot decide anything: a failure, not "not configured"."""
    if settings.policy != "llm" or settings.llm_config.configured:
        return None
    from bot.services import LLM_VARIABLES

    return Check("LLM", False, f"TRADEOPS_POLICY=llm but no LLM endpoint is configured: set {LLM_VARIABLES}")


def run_checks(settings: Settings, *, today: date | None = None) -> Iterator[Check]:
    """Every check, in order; ``today`` (default: the real clock's UTC date) for the calendars.
    Creates nothing: the database is opened read-only, a missing one is reported."""
    from venues.clock import RealClock

    yield data_dir_check(settings)
    yield database_check(settings)

    def talib() -> str:
        import talib as ta

        c_version = ta.__ta_version__
        c_version = c_version.decode() if isinstance(c_version, bytes) else str(c_version)
        return f"TA-Lib {ta.__version__} (C library {c_version.split()[0]})"

    yield _run("indicators", talib)
    yield calendars_check(settings, today or RealClock().now().date())

    def replay_data() -> str:
        from venues.clock import RealClock
        from venues.replay import MARKETS, ReplayVenue

        parts = []
        for key in MARKETS:
            venue = ReplayVenue(key, RealClock())
            symbols = [s.instrument.symbol for s in MARKETS[key].series]
            first, last = zip(*(venue.available_range(s) for s in symbols), strict=True)
            listed = plural(len(symbols), "symbol")
            parts.append(f"{venue.name}: {listed}, {min(first):%Y-%m-%d} to {max(last):%Y-%m-%d}")
        return "; ".join(parts)

    yield _run("replay data", replay_data)

    yield from venue_checks(settings)

    def bars_lake() -> str:
        from storage.lake import BarsLake

        lake = BarsLake(settings.lake_dir)
        datasets = lake.datasets()
        if not datasets:
            return f"empty ({lake.root.resolve()}): `tradeops backfill` fills it"
        rows = sum(m.rows for _, m in datasets)
        gaps = sum(len(m.gaps) for _, m in datasets)
        return (
            f"{len(datasets)} dataset(s), {rows} bars, {gaps} gap(s) the venues have, in {lake.root.resolve()}; "
            "served as venue `lake`"
        )

    yield _run("bars lake", bars_lake)

    # Chat transports: each one with a token is asked who it is; a token is never printed.
    tokens = settings.transport_tokens
    if not tokens:
        from bot.transport import TRANSPORT_VARIABLES  # bot.run would load the agent graph

        yield Check("chat", True, f"no transport configured: `tradeops run` needs {TRANSPORT_VARIABLES}")
    if "telegram" in tokens:
        yield _run("telegram", lambda: telegram_probe(settings, tokens["telegram"]))
        yield _run("telegram users", lambda: allowlist_probe(settings, "telegram"))
    if "discord" in tokens:
        yield _run("discord", lambda: discord_probe(settings, tokens["discord"]))
        yield _run("discord users", lambda: allowlist_probe(settings, "discord"))

    policy_problem = llm_policy_check(settings)
    if policy_problem is not None:
        yield policy_problem
        return
    llm = settings.llm_config
    if settings.policy == "ml" and not llm.configured:
        yield ml_policy_check(settings)
        return
    if not llm.configured:
        from bot.services import LLM_VARIABLES

        yield Check("LLM", True, f"not configured: the rule policy decides (to use an LLM, set {LLM_VARIABLES})")
        return
    try:
        import asyncio

        from agent.llm.client import probe

        lines = asyncio.run(probe(llm))
    except Exception as exc:  # the doctor reports; it does not stop at the first failure
        yield Check("LLM", False, f"{type(exc).__name__}: {exc}")
        return
    for name, ok, detail in lines:
        yield Check(name, ok, detail)


def ml_model_problem(settings: Settings) -> tuple[str, str | None]:
    """(the model id, None) when the ML policy's model (TRADEOPS_ML_MODEL, else the promoted one)
    loads and its files match their card's checksums; else ("", what is wrong)."""
    from tools.model_registry import ModelRegistry, RegistryError

    try:
        return ModelRegistry(settings.models_dir).load(settings.ml_model or None).id, None
    except RegistryError as exc:
        return "", str(exc)


def ml_policy_check(settings: Settings) -> Check:
    """TRADEOPS_POLICY=ml: which model decides, and whether it loads (the policy abstains on every
    decision otherwise)."""
    model_id, problem = ml_model_problem(settings)
    if problem is not None:
        return Check("ML model", False, f"TRADEOPS_POLICY=ml, but {problem}; the ML policy abstains on every decision")
    how = "TRADEOPS_ML_MODEL" if settings.ml_model else "promoted"
    return Check("ML model", True, f"the ML policy decides with {model_id} ({how}; its files check out)")
