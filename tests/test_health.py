"""Health, readiness, Prometheus metrics and JSON logs.

The whole bot on the replay data with a recording transport and TRADEOPS_HTTP_PORT on a free port:
/healthz, /readyz and /metrics answer over real HTTP (httpx); the metrics parse with
prometheus-client's own parser and their counts move as scans run, cards are answered and orders
fill; /readyz turns 503 naming the part when a venue's health() or a transport fails. The metrics of
venue requests and LLM calls are counted where every request goes through (VenueGuard, the LLM
client's call record), checked against a guard with scripted failures and a respx-mocked endpoint.
JSON log lines carry the text line's fields (signal_done's as keys) with registered secrets
redacted, in process and through the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

import bot.health
from agent.llm.client import OpenAICompatClient
from agent.llm.config import LLMConfig
from agent.llm.types import LLMFailure
from agent.runner import SignalRunner
from bot.health import HealthServer, HealthServerError, Readiness, transport_problems
from bot.logs import register_secret, setup_logging
from bot.run import RunRefused, run_bot
from bot.settings import Settings
from bot.transport import StopRequest
from tests.support import free_port, restored_logging
from tests.test_run import Bot, RecordingTransport
from venues.adapters.resilience import CircuitBreaker, RetryPolicy, Transient, VenueGuard
from venues.clock import SimulatedClock
from venues.errors import VenueError, VenueUnavailable
from venues.metrics import Metrics, installed, metrics

TRADEOPS = Path(sys.executable).parent / "tradeops"
WAIT_SECONDS = 120.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, found), value in samples.items() if n == name and wanted <= found)


# --------------------------------------------------------------------------------------------------
# the running bot


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response:
    return await client.get(path, timeout=30)


async def _until(condition: Callable[[], Any], what: str, seen: Callable[[], Any]) -> None:
    """Polls ``condition`` (an HTTP GET each time) until it holds; ``seen`` says what was found."""

    async def wait() -> None:
        while True:  # the state is read over HTTP: there is no event to wait on
            if await condition():
                return
            await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(wait(), WAIT_SECONDS)
    except TimeoutError:
        raise AssertionError(f"not seen within {WAIT_SECONDS} s: {what}; saw {seen()}") from None


async def test_run_serves_healthz_readyz_and_metrics_that_move_as_it_works(
    hermetic: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage.db import sqlite_url

    monkeypatch.setattr(bot.health, "VENUE_HEALTH_TTL_SECONDS", 0.0)  # each probe asks the venues again
    port = free_port()
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=sqlite_url(tmp_path / "var" / "tradeops.db"),
        http_port=port,
        auto_approve="all",  # orders at once, at the card's price: an answer seconds later may meet drift
        _env_file=None,
    )
    bot_run = Bot(settings)
    bot_run.start()
    await bot_run.until(lambda t: len(t.cards) >= 1)  # a scheduled scan pushed a card
    transport = bot_run.transport
    services = transport.services
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        health = await _get(client, "/healthz")
        assert health.status_code == 200 and health.json() == {"status": "up"}

        ready = await _get(client, "/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and body["failing"] == []
        expected = {"database", "transport:recording", *(f"venue:{name}" for name in services.venues)}
        assert set(body["checks"]) == expected  # no Redis configured: not checked
        assert body["checks"]["database"] == {"ok": True, "detail": "sqlite answers"}
        assert body["checks"]["transport:recording"]["ok"] is True

        first: Samples = {}

        async def scanned() -> bool:  # the scan that pushed the card may still be walking its candidates
            nonlocal first
            first = parse((await _get(client, "/metrics")).text)
            return total(first, "tradeops_scan_candidates_total") >= 1

        await _until(scanned, "a finished scan with candidates", lambda: total(first, "tradeops_scans_total"))
        assert total(first, "tradeops_scheduler_leader") == 1
        assert total(first, "python_info") == 1 and total(first, "process_cpu_seconds_total") > 0  # the standard ones
        assert total(first, "tradeops_scans_total", result="done") >= 1
        assert total(first, "tradeops_scan_duration_seconds_count") >= 1
        assert total(first, "tradeops_signals_total", outcome="pending") >= 1

        # More scans run, signals are approved and their entries fill: the counts move.
        later: Samples = {}

        async def moved() -> bool:
            nonlocal later
            later = parse((await _get(client, "/metrics")).text)
            return (
                total(later, "tradeops_scans_total") > total(first, "tradeops_scans_total")
                and total(later, "tradeops_signal_decisions_total", decision="approved") >= 1
                and total(later, "tradeops_fills_total") >= 1
            )

        await _until(
            moved,
            "more scans, an approval and a fill in /metrics",
            lambda: {
                n: total(later, n)
                for n in (
                    "tradeops_scans_total",
                    "tradeops_signal_decisions_total",
                    "tradeops_fills_total",
                    "tradeops_orders_total",
                )
            },
        )
        assert total(later, "tradeops_approval_latency_seconds_count", decision="approved") >= 1
        assert total(later, "tradeops_orders_total", status="pending") >= 1
        assert total(later, "tradeops_venue_requests_total") == 0  # the replay venues send no request

        # A venue whose health() fails: 503, and the body names it with its message.
        venue = services.venues["replay-crypto"]

        async def refusing() -> str:
            raise VenueError("replay-crypto: the data files are gone; reinstall tradeops")

        venue.health = refusing  # type: ignore[attr-defined]
        down = await _get(client, "/readyz")
        assert down.status_code == 503
        assert down.json()["failing"] == ["venue:replay-crypto"]
        assert down.json()["checks"]["venue:replay-crypto"] == {
            "ok": False,
            "detail": "replay-crypto: the data files are gone; reinstall tradeops",
        }
        del venue.health  # type: ignore[attr-defined]

        # A transport that stopped taking updates: 503 naming it.
        transport.not_ready = lambda: "the platform closed the connection"  # type: ignore[attr-defined]
        lost = await _get(client, "/readyz")
        assert lost.status_code == 503 and lost.json()["failing"] == ["transport:recording"]
        assert lost.json()["checks"]["transport:recording"]["detail"] == "the platform closed the connection"
        del transport.not_ready  # type: ignore[attr-defined]
        assert (await _get(client, "/readyz")).status_code == 200

        # A scraper asking for OpenMetrics gets it (prometheus-client's own encoder).
        open_metrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.rstrip().endswith("# EOF")

    bot_run.stop.set()
    assert await asyncio.wait_for(bot_run.task, 30) == 0  # type: ignore[arg-type]
    with pytest.raises(httpx.ConnectError):  # the server stopped with the run
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


async def test_a_port_in_use_refuses_the_run_with_the_setting_to_change(hermetic: None, tmp_path: Path) -> None:
    from storage.db import sqlite_url

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path / "var",
            database_url=sqlite_url(tmp_path / "var" / "tradeops.db"),
            http_port=port,
            _env_file=None,
        )
        made: list[RecordingTransport] = []

        def make(settings: Settings, services: Any) -> list[RecordingTransport]:
            made.append(RecordingTransport(services))
            return made

        with pytest.raises(RunRefused, match=f"cannot listen on 127.0.0.1:{port}.*TRADEOPS_HTTP_PORT"):
            await run_bot(settings, make, speed=60)
    assert made and not made[0].started  # refused before any transport started


async def test_without_a_port_no_server_runs(hermetic: None, tmp_path: Path) -> None:
    from bot.health import serving_health

    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert settings.http_port is None
    async with serving_health(settings, None, {}, dict, Metrics().registry) as server:  # type: ignore[arg-type]
        assert server is None


# --------------------------------------------------------------------------------------------------
# readiness parts


def test_transport_problems_name_what_is_wrong() -> None:
    class Quiet:
        name = "quiet"

    class Reporting:
        name = "reporting"

        def __init__(self, problem: str | None) -> None:
            self.problem = problem

        def not_ready(self) -> str | None:
            return self.problem

    quiet, fine, broken, waiting = Quiet(), Reporting(None), Reporting("polling stopped"), Quiet()
    waiting.name = "waiting"
    everything: list[Any] = [quiet, fine, broken, waiting]
    problems = transport_problems(everything, everything[:3], [])
    assert problems == {"quiet": None, "reporting": "polling stopped", "waiting": "starting"}
    asked = transport_problems([quiet], [quiet], [StopRequest("quiet", "409 Conflict: another process polls")])
    assert asked == {"quiet": "409 Conflict: another process polls"}


def _redis_answers() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


async def test_redis_is_checked_when_configured_and_its_password_never_shows(engine: Any) -> None:
    if not _redis_answers():
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    up = Readiness(engine, {}, dict, redis_url="redis://127.0.0.1:6379/0")
    checks = {c.name: c for c in await up.checks()}
    assert checks["redis"].ok and checks["redis"].detail == "PONG"
    assert checks["database"].ok

    register_secret("hunter2-redis-pass")
    closed = free_port()  # nothing listens there
    down = Readiness(engine, {}, dict, redis_url=f"redis://:hunter2-redis-pass@127.0.0.1:{closed}/0")
    checks = {c.name: c for c in await down.checks()}
    assert not checks["redis"].ok
    assert "ConnectionError" in checks["redis"].detail and "hunter2" not in checks["redis"].detail


async def test_a_venue_answer_is_reused_within_the_ttl_and_a_slow_one_times_out(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.health, "READY_TIMEOUT_SECONDS", 0.2)

    class Counting:
        def __init__(self, delay: float = 0.0) -> None:
            self.asked = 0
            self.delay = delay

        async def health(self) -> str:
            self.asked += 1
            await asyncio.sleep(self.delay)
            return "42 markets"

    now = [100.0]
    fast, slow = Counting(), Counting(delay=5.0)
    readiness = Readiness(engine, {"fast": fast, "slow": slow}, dict, venue_ttl=30, timer=lambda: now[0])  # type: ignore[dict-item]
    checks = {c.name: c for c in await readiness.checks()}
    assert checks["venue:fast"].ok and checks["venue:fast"].detail == "42 markets"
    assert not checks["venue:slow"].ok and checks["venue:slow"].detail == "no answer within 0.2 s"
    await readiness.checks()
    assert fast.asked == 1  # within the TTL: the answer is reused (a venue's health costs requests)
    now[0] += 31
    await readiness.checks()
    assert fast.asked == 2


async def test_the_server_refuses_a_bad_address_with_a_clear_message(engine: Any) -> None:
    readiness = Readiness(engine, {}, dict)
    server = HealthServer("203.0.113.7", free_port(), readiness, Metrics().registry)  # not this machine's
    with pytest.raises(HealthServerError, match=r"cannot listen on 203\.0\.113\.7:.*TRADEOPS_HTTP_HOST"):
        await server.start()


# --------------------------------------------------------------------------------------------------
# where requests are counted


async def test_venue_requests_and_errors_are_counted_by_venue_and_kind() -> None:
    async def no_sleep(_: float) -> None:
        return None

    def classify(exc: BaseException) -> Transient | None:
        return Transient() if isinstance(exc, ConnectionError) else None

    def translate(exc: BaseException) -> BaseException:
        return VenueError(f"okx refused: {exc}")

    with installed(Metrics()) as counted:
        guard = VenueGuard(
            "okx",
            classify,
            translate,
            retry=RetryPolicy(attempts=3),
            breaker=CircuitBreaker("okx", failure_threshold=1, reset_after=3600),
            sleep=no_sleep,
        )

        async def answers() -> str:
            return "ok"

        async def refuses() -> str:
            raise ValueError("bad symbol")

        async def down() -> str:
            raise ConnectionError("reset by peer")

        assert await guard.call("ticker", answers) == "ok"
        with pytest.raises(VenueError, match="okx refused"):
            await guard.call("ticker", refuses)
        with pytest.raises(VenueUnavailable):
            await guard.call("ticker", down)  # three tries, then the breaker opens
        with pytest.raises(VenueUnavailable, match="paused"):
            await guard.call("ticker", answers)  # refused by the open breaker: no request
        samples = parse(_exposition(counted))
    assert total(samples, "tradeops_venue_requests_total", venue="okx") == 1 + 1 + 3 == guard.requests
    assert total(samples, "tradeops_venue_errors_total", venue="okx", kind="refused") == 1
    assert total(samples, "tradeops_venue_errors_total", venue="okx", kind="unavailable") == 1
    assert total(samples, "tradeops_venue_errors_total", venue="okx", kind="circuit_open") == 1
    assert metrics() is not counted  # the block ended: counting goes back to what it was


def _exposition(counted: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(counted.registry).decode()


@respx.mock
async def test_llm_calls_tokens_cost_and_latency_are_counted_on_every_way_out() -> None:
    base = "https://llm.test.example/v1"
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1767623400,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "HOLD"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    }
    route = respx.post(f"{base}/chat/completions")
    route.side_effect = [
        httpx.Response(200, json=answer),
        httpx.Response(401, json={"error": {"message": "bad key", "type": "auth"}}),
    ]
    config = LLMConfig(
        base_url=base,
        api_key="sk-test-0123456789",
        model="gpt-4o-mini",
        provider="openai",
        cache="off",
        prices={"gpt-4o-mini": (Decimal("0.15"), Decimal("0.60"))},
    )
    async with httpx.AsyncClient() as http:
        client = OpenAICompatClient(config, clock=SimulatedClock(_now()), http_client=http)
        with installed(Metrics()) as counted:
            result = await client.chat([{"role": "user", "content": "AAPL?"}])
            with pytest.raises(LLMFailure):
                await client.chat([{"role": "user", "content": "MSFT?"}])
            samples = parse(_exposition(counted))
    assert result.record.cost_usd == Decimal("0.00045")  # 1000 x 0.15 / 1M + 500 x 0.60 / 1M
    model = {"model": "gpt-4o-mini"}
    assert total(samples, "tradeops_llm_calls_total", **model, outcome="ok", cached="false") == 1
    assert total(samples, "tradeops_llm_calls_total", **model, outcome="http_error") == 1
    assert total(samples, "tradeops_llm_tokens_total", **model, kind="prompt") == 1000
    assert total(samples, "tradeops_llm_tokens_total", **model, kind="completion") == 500
    assert total(samples, "tradeops_llm_cost_usd_total", **model) == pytest.approx(0.00045)
    assert total(samples, "tradeops_llm_latency_seconds_count", **model) == 2


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# JSON logs


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_json_lines_carry_the_text_fields_and_signal_done_as_keys(tmp_path: Path) -> None:
    with restored_logging():
        setup_logging("INFO", log_file=tmp_path / "json.log", console_level="ERROR", fmt="json")
        values = {
            "signal_id": "yaxjydiu",
            "symbol": "AMZN",
            "signal": {"action": "BUY", "confidence": 0.8},
            "facts": {"bars": 250},
            "timings": {"policy": 12.4},
        }
        SignalRunner._log_done(values, started=0.0)
        logging.getLogger("tradeops.run").warning("scan of %s failed: %s", "crypto", "timeout")
        setup_logging("INFO", log_file=tmp_path / "text.log", console_level="ERROR", fmt="text")
        SignalRunner._log_done(values, started=0.0)
    done, warning = _lines(tmp_path / "json.log")
    text = (tmp_path / "text.log").read_text(encoding="utf-8").splitlines()[0]
    assert done["level"] == "INFO" and done["logger"] == "tradeops.agent"
    assert done["message"].startswith(
        "signal_done | id=yaxjydiu symbol=AMZN action=BUY conf=0.80 bars=250 ms_policy=12"
    )
    assert text.split(" | ", 1)[1].startswith(done["message"].split(" ms_total=")[0])  # the same message as text
    assert done["event"] == "signal_done"
    assert {k: done[k] for k in ("id", "symbol", "action", "conf", "bars", "ms_policy")} == {
        "id": "yaxjydiu",
        "symbol": "AMZN",
        "action": "BUY",
        "conf": 0.8,
        "bars": 250,
        "ms_policy": 12,
    }
    assert isinstance(done["ms_total"], int) and done["time"].endswith("+00:00")
    assert warning == {
        "time": warning["time"],
        "level": "WARNING",
        "logger": "tradeops.run",
        "message": "scan of crypto failed: timeout",
    }


def test_a_registered_secret_never_appears_in_a_json_line(tmp_path: Path) -> None:
    secret = 'tok"en\\123:ABCsecret'  # a quote and a backslash: JSON escapes them, redaction must not miss it
    with restored_logging():
        register_secret(secret)
        setup_logging("INFO", log_file=tmp_path / "json.log", console_level="ERROR", fmt="json")
        log = logging.getLogger("tradeops.test")
        log.info("calling https://api.example/bot%s/getMe", secret)
        log.info("fields", extra={"event": "probe", "fields": {"url": f"x{secret}y", "nested": {"k": [secret]}}})
        try:
            raise RuntimeError(f"refused token {secret}")
        except RuntimeError:
            log.exception("start failed")
    raw = (tmp_path / "json.log").read_text(encoding="utf-8")
    for needle in (secret, json.dumps(secret)[1:-1], "ABCsecret"):
        assert needle not in raw
    first, second, third = _lines(tmp_path / "json.log")
    assert first["message"] == "calling https://api.example/bot***/getMe"
    assert second["url"] == "x***y" and second["nested"] == {"k": ["***"]}
    assert "refused token ***" in third["exception"] and third["message"] == "start failed"


@pytest.mark.slow
def test_the_cli_writes_json_lines_when_asked(hermetic: None, tmp_path: Path) -> None:
    """`tradeops scan` (its log goes to tradeops.log in the data dir) with TRADEOPS_LOG_FORMAT=json:
    every line is one JSON object, the signal_done line with its fields."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_LOG_FORMAT"] = "JSON"
    result = subprocess.run(
        [str(TRADEOPS), "scan", "us", "--data-dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = _lines(tmp_path / "var" / "tradeops.log")
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    done = [line for line in lines if line.get("event") == "signal_done"]
    assert done and done[0]["symbol"] in ("AMZN", "SPY") and "ms_total" in done[0]


def test_settings_of_the_health_server_and_logs(hermetic: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("TRADEOPS_HTTP_PORT", "")
    monkeypatch.setenv("TRADEOPS_REDIS_URL", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.http_port is None and settings.http_host == "127.0.0.1" and settings.redis_url is None
    assert settings.log_format == "text"
    monkeypatch.setenv("TRADEOPS_HTTP_PORT", "9108")
    monkeypatch.setenv("TRADEOPS_LOG_FORMAT", "Json")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.http_port == 9108 and settings.log_format == "json"
    for name, value, message in (
        ("TRADEOPS_HTTP_PORT", "70000", "less than or equal to 65535"),
        ("TRADEOPS_LOG_FORMAT", "xml", "'text' or 'json'"),
        ("TRADEOPS_REDIS_URL", "http://user:s3cret@cache:6379", "must be a Redis URL"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            with pytest.raises(ValidationError) as caught:
                Settings(_env_file=None)  # type: ignore[call-arg]
            said = caught.value.errors()[0]["msg"]  # what the CLI prints
            assert message in said and "s3cret" not in said
