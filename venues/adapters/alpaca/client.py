"""alpaca-py's clients behind one VenueGuard: every request runs in a worker thread (alpaca-py is
synchronous, on requests), paced, retried on transient failures only, and its permanent failures
turned into errors a user can read.

alpaca-py retries a 429 (and a 504) by itself, three times, three seconds apart, POSTs included; it
cannot be told not to through its constructors (a retry count of 0 reads as "default"). Its retry
count is set to zero here so every retry is the guard's (honouring Retry-After, counted, and
looked up by client order id before an order is re-sent: see broker.py). It also sends requests
without a timeout: each client gets a session that adds one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient

from venues.adapters.alpaca.config import AlpacaConfig
from venues.adapters.resilience import CircuitBreaker, RetryPolicy, Transient, VenueGuard, retry_after_seconds
from venues.clock import Clock
from venues.errors import VenueAuthError, VenueError

T = TypeVar("T")

KEY_SETTINGS = "TRADEOPS_ALPACA_API_KEY and TRADEOPS_ALPACA_SECRET_KEY (or APCA_API_KEY_ID / APCA_API_SECRET_KEY)"


class AlpacaApiError(VenueError):
    """Alpaca answered a request with a 4xx: ``status`` (HTTP), ``code`` (Alpaca's own, if any) and
    ``detail`` (its message). Callers that know the context re-raise it as a more specific error."""

    def __init__(self, status: int | None, code: int | None, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"alpaca refused the request (HTTP {status}): {detail}")


class _TimeoutSession(requests.Session):
    """A requests session that puts ``timeout`` (seconds) on every request that has none."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


def _prepare(client: RESTClient, config: AlpacaConfig) -> None:
    client._retry = 0  # every retry is the guard's (module docstring)
    client._session = _TimeoutSession(config.timeout)


def error_detail(exc: APIError) -> tuple[int | None, str]:
    """(Alpaca's error code, its message) from an APIError's body, which is JSON or plain text."""
    text = str(exc).strip()
    try:
        body = json.loads(text)
    except ValueError:
        return None, text[:300] or "no message"
    if isinstance(body, dict):
        code = body.get("code")
        message = str(body.get("message", text))
        return (code if isinstance(code, int) else None), message[:300]
    return None, text[:300]


class AlpacaApi:
    """The three alpaca-py clients (trading, stock data, option data) in raw-data mode, and the
    guard every call goes through. ``sleep`` is the guard's (tests inject one that does not wait)."""

    def __init__(
        self,
        config: AlpacaConfig,
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        keys = {"api_key": config.api_key, "secret_key": config.secret_key, "raw_data": True}
        # paper=True always: without an override alpaca-py then talks to the paper host.
        self.trading = TradingClient(paper=True, url_override=config.trading_url, **keys)  # type: ignore[arg-type]
        self.stocks = StockHistoricalDataClient(url_override=config.data_url, **keys)  # type: ignore[arg-type]
        self.options = OptionHistoricalDataClient(url_override=config.data_url, **keys)  # type: ignore[arg-type]
        for client in (self.trading, self.stocks, self.options):
            _prepare(client, config)
        extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self.guard = VenueGuard(
            config.name,
            self.classify,
            self.translate,
            rate_per_second=config.rate_per_second,
            retry=retry,
            breaker=breaker,
            **extra,
        )

    async def call(self, what: str, request: Callable[[], T]) -> T:
        """Run the synchronous ``request`` in a thread, through the guard."""
        return await self.guard.call(what, lambda: asyncio.to_thread(request))

    def classify(self, exc: BaseException) -> Transient | None:
        if isinstance(exc, requests.Timeout | requests.ConnectionError):
            return Transient()
        if isinstance(exc, APIError):
            status = exc.status_code
            if status is not None and (status == 429 or status >= 500):
                response = exc.response
                header = response.headers.get("Retry-After") if response is not None else None
                return Transient(retry_after_seconds(header, now=self.clock.now()))
        return None

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, APIError):
            status = exc.status_code
            code, message = error_detail(exc)
            if status == 401:
                return VenueAuthError(
                    f"Alpaca refused the API keys (HTTP 401: {message}): set {KEY_SETTINGS} to the keys of "
                    "your paper account (Alpaca dashboard, Paper Trading, API Keys)"
                )
            if status == 403 and "subscription" in message.lower():
                return VenueAuthError(
                    f"Alpaca's data plan does not cover this request ({message}): set TRADEOPS_ALPACA_FEED=iex "
                    "(the free feed) or upgrade the market data subscription"
                )
            return AlpacaApiError(status, code, message)
        if isinstance(exc, ValueError):  # alpaca-py's own validation of a request
            return VenueError(f"alpaca: {exc}")
        return exc

    def close(self) -> None:
        for client in (self.trading, self.stocks, self.options):
            client._session.close()
