"""The ccxt adapter's configuration: a frozen value built by bot/venues.py from Settings (nothing
under venues/ reads the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import ccxt

from venues.errors import VenueError

MarketType = Literal["spot", "swap"]
MARKET_TYPES: tuple[MarketType, ...] = ("spot", "swap")


class CcxtConfigError(VenueError):
    """Settings that cannot make a ccxt venue; the message names the setting and what is valid."""


@dataclass(frozen=True)
class CcxtConfig:
    """What the ccxt venue needs.

    - ``exchange``: a ccxt exchange id (``okx``, ``binance``, ...), checked against ``ccxt.exchanges``.
    - ``api_key`` / ``secret`` / ``password``: optional credentials (OKX also needs the passphrase as
      ``password``). With keys, ``sandbox`` must be on: orders only ever go to the test environment.
    - ``api_url``: replaces the scheme and host of every REST base URL of the exchange (a proxy or
      a local fake server), keeping each URL's path.
    - ``market_types``: which markets become instruments: spot and/or USDT-margined linear
      perpetual swaps.
    - ``timeout_s``: per HTTP request, seconds. ``rate_limit_ms``: ccxt's own pacing between requests
      (None: the exchange's published rate limit).
    - ``default_bars``: how many bars ``bars()`` returns when asked with neither start nor limit.
    """

    exchange: str
    api_key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sandbox: bool = False
    api_url: str | None = None
    market_types: tuple[MarketType, ...] = MARKET_TYPES
    timeout_s: float = 10.0
    rate_limit_ms: int | None = None
    default_bars: int = 500

    def __post_init__(self) -> None:
        validate_exchange_id(self.exchange)
        if not self.market_types:
            raise CcxtConfigError(f"TRADEOPS_CCXT_MARKETS is empty; valid market types: {', '.join(MARKET_TYPES)}")
        for kind in self.market_types:
            if kind not in MARKET_TYPES:
                raise CcxtConfigError(
                    f"unknown ccxt market type {kind!r} in TRADEOPS_CCXT_MARKETS; valid: {', '.join(MARKET_TYPES)}"
                )
        if self.timeout_s <= 0:
            raise CcxtConfigError(f"the ccxt request timeout must be positive, got {self.timeout_s}")
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise CcxtConfigError(
                f"TRADEOPS_CCXT_API_URL must be an http:// or https:// base URL, got {self.api_url[:80]!r}"
            )
        if self.has_keys and not self.sandbox:
            raise CcxtConfigError(
                "ccxt keys are set but TRADEOPS_CCXT_SANDBOX is off: tradeops is paper only and never sends an "
                "order to a live account. Set TRADEOPS_CCXT_SANDBOX=true to use the exchange's test environment, "
                "or remove TRADEOPS_CCXT_API_KEY/_SECRET/_PASSWORD to paper-trade on public data"
            )

    @property
    def has_keys(self) -> bool:
        return bool(self.api_key or self.secret or self.password)


def validate_exchange_id(exchange: str) -> str:
    """``exchange`` when ccxt knows it; else CcxtConfigError naming a few valid ids."""
    if exchange in ccxt.exchanges:
        return exchange
    known = sorted(ccxt.exchanges)
    close = [name for name in known if exchange and (name.startswith(exchange[:3]) or exchange in name)][:8]
    few = close or [name for name in ("okx", "binance", "bybit", "kraken", "coinbase", "bitget") if name in known]
    raise CcxtConfigError(
        f"unknown ccxt exchange {exchange[:40]!r} in TRADEOPS_CCXT_EXCHANGE; valid ids include {', '.join(few)} "
        f"({len(known)} in all: see ccxt.exchanges)"
    )
