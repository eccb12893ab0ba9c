"""The ccxt exchange object and how its failures are read.

- :func:`make_exchange`: a ``ccxt.async_support`` exchange with ccxt's own rate limiter on, the
  REST base URLs rewritten to ``api_url`` when given (also the test-environment URLs, so sandbox mode
  reaches the same server), and the sandbox switched on when asked.
- :func:`classify` / :func:`translator`: what VenueGuard needs. Network errors, timeouts, 5xx and 429
  are transient (429 with the Retry-After header ccxt kept from the last response); everything else
  is permanent and becomes a VenueError a user can read, never showing a key or a signed URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support as ccxt_async

from venues.adapters.ccxt.config import CcxtConfig
from venues.adapters.resilience import Transient, retry_after_seconds
from venues.errors import OrderRejected, UnknownSymbolError, VenueAuthError, VenueError

KEY_SETTINGS = "TRADEOPS_CCXT_API_KEY, TRADEOPS_CCXT_SECRET and TRADEOPS_CCXT_PASSWORD"

# ccxt's option naming of the market types it loads, for the exchanges whose loader takes a list.
_FETCH_MARKET_TYPES: dict[str, dict[str, str]] = {
    "okx": {"spot": "spot", "swap": "swap"},
    "binance": {"spot": "spot", "swap": "linear"},
}


def rewrite_urls(urls: Any, base: str) -> Any:
    """``urls`` (a string or nested dicts/lists of strings, as in ``exchange.urls['api']``) with each
    URL's scheme and host replaced by ``base``, the path kept: with base ``http://127.0.0.1:8080``,
    ``https://fapi.binance.com/fapi/v1`` becomes ``http://127.0.0.1:8080/fapi/v1`` and OKX's
    ``https://{hostname}`` becomes ``http://127.0.0.1:8080``."""
    root = base.rstrip("/")
    if isinstance(urls, str):
        if "://" not in urls:
            return urls
        path = urlsplit(urls.replace("{hostname}", "host.invalid")).path
        return root + path.rstrip("/") if path not in ("", "/") else root
    if isinstance(urls, dict):
        return {key: rewrite_urls(value, base) for key, value in urls.items()}
    if isinstance(urls, list):
        return [rewrite_urls(value, base) for value in urls]
    return urls


def make_exchange(config: CcxtConfig) -> Any:
    """A ``ccxt.async_support`` exchange for ``config`` (not yet connected: markets load on first use)."""
    cls = getattr(ccxt_async, config.exchange)
    params: dict[str, Any] = {"enableRateLimit": True, "timeout": int(config.timeout_s * 1000)}
    if config.rate_limit_ms is not None:
        params["rateLimit"] = config.rate_limit_ms
    for name in ("api_key", "secret", "password"):
        value = getattr(config, name)
        if value:
            params["apiKey" if name == "api_key" else name] = value
    exchange = cls(params)
    types = _FETCH_MARKET_TYPES.get(exchange.id)
    if types is not None:
        exchange.options["fetchMarkets"] = {
            **(exchange.options.get("fetchMarkets") or {}),
            "types": [types[kind] for kind in config.market_types],
        }
    if exchange.id == "binance":
        exchange.options["fetchCurrencies"] = False  # a private wallet call; markets are enough
    if config.api_url:
        for section in ("api", "test"):
            if section in exchange.urls:
                exchange.urls[section] = rewrite_urls(exchange.urls[section], config.api_url)
    if config.sandbox:
        if "test" not in exchange.urls:
            raise VenueError(
                f"{config.exchange} has no sandbox (test environment) in ccxt, so TRADEOPS_CCXT_SANDBOX=true "
                "cannot be honoured: turn it off and remove the keys to paper-trade on public data"
            )
        exchange.set_sandbox_mode(True)
    return exchange


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def classifier(exchange: Any, now: Callable[[], datetime]) -> Callable[[BaseException], Transient | None]:
    """``classify`` for VenueGuard: ccxt's NetworkError family (timeouts, 5xx, DDoS protection, 429) is
    transient; a 429 carries the Retry-After header (seconds or an HTTP date) of that response."""

    def classify(exc: BaseException) -> Transient | None:
        if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            value = header(getattr(exchange, "last_response_headers", None), "Retry-After")
            return Transient(retry_after_seconds(value, now=now()))
        if isinstance(exc, ccxt.NetworkError | TimeoutError | ConnectionError):
            return Transient()
        return None

    return classify


_SIGNED = re.compile(r"(https?://\S+?)\?\S*")


def _clean(exc: BaseException) -> str:
    """ccxt's message without query strings (a signed request's signature, timestamps) and capped."""
    text = _SIGNED.sub(r"\1", str(exc)).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def translator(venue: str, symbol_list: Callable[[], list[str]]) -> Callable[[BaseException], BaseException]:
    """``translate`` for VenueGuard: a permanent ccxt failure as the VenueError the user reads."""

    def translate(exc: BaseException) -> BaseException:
        if isinstance(exc, VenueError):
            return exc
        if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
            return VenueAuthError(
                f"{venue} refused the API credentials ({type(exc).__name__}): check {KEY_SETTINGS} "
                "(keys of the exchange's test environment, since TRADEOPS_CCXT_SANDBOX is on) and their permissions"
            )
        if isinstance(exc, ccxt.BadSymbol):
            match = re.search(r"([A-Z0-9]+/[A-Z0-9]+(?::[A-Z0-9]+)?)", str(exc))
            return UnknownSymbolError(match.group(1) if match else _clean(exc), venue, symbol_list())
        if isinstance(exc, ccxt.InsufficientFunds | ccxt.InvalidOrder):
            return OrderRejected(f"{venue} rejected the order: {_clean(exc)}")
        if isinstance(exc, ccxt.NotSupported):
            return VenueError(f"{venue} does not support this through ccxt: {_clean(exc)}")
        return VenueError(f"{venue} refused the request ({type(exc).__name__}): {_clean(exc)}")

    return translate
