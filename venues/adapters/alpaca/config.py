"""The alpaca adapter's configuration, built by bot/venues.py from settings (nothing under venues/
reads the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

# Alpaca's live trading host: an order sent there spends real money. Never a path to it.
LIVE_TRADING_HOST = "api.alpaca.markets"
PAPER_TRADING_URL = "https://paper-api.alpaca.markets"
DATA_URL = "https://data.alpaca.markets"

Feed = Literal["iex", "sip"]
FEEDS: tuple[str, ...] = ("iex", "sip")


class AlpacaConfigError(ValueError):
    """Settings that cannot make the alpaca venue; the message names the setting and what is valid."""


@dataclass(frozen=True)
class AlpacaConfig:
    """Keys and endpoints of one Alpaca paper account.

    - ``trading_url`` / ``data_url``: alpaca-py's ``url_override`` (None = Alpaca's paper trading
      and market data hosts); a trading URL on Alpaca's live host is refused.
    - ``feed``: the stock data feed, ``iex`` (free) or ``sip`` (all US exchanges; a paid plan).
    - ``timeout``: seconds per HTTP request (alpaca-py sets none of its own).
    - ``rate_per_second``: our own pacing of requests (Alpaca allows 200 a minute per account).
    """

    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    trading_url: str | None = None
    data_url: str | None = None
    feed: Feed = "iex"
    timeout: float = 10.0
    rate_per_second: float = 3.0
    name: str = "alpaca"

    def __post_init__(self) -> None:
        if not self.api_key.strip() or not self.secret_key.strip():
            raise AlpacaConfigError(
                "alpaca needs both keys: set TRADEOPS_ALPACA_API_KEY and TRADEOPS_ALPACA_SECRET_KEY "
                "(or APCA_API_KEY_ID and APCA_API_SECRET_KEY) to the paper account's keys"
            )
        if self.feed not in FEEDS:
            raise AlpacaConfigError(f"TRADEOPS_ALPACA_FEED={self.feed!r} is not a feed; valid: {', '.join(FEEDS)}")
        if self.timeout <= 0:
            raise AlpacaConfigError(f"the alpaca request timeout must be positive, got {self.timeout}")
        for setting, url in (
            ("TRADEOPS_ALPACA_TRADING_URL", self.trading_url),
            ("TRADEOPS_ALPACA_DATA_URL", self.data_url),
        ):
            if url is not None:
                _check_url(setting, url)
        if self.trading_url is not None and urlsplit(self.trading_url).hostname == LIVE_TRADING_HOST:
            raise AlpacaConfigError(
                f"TRADEOPS_ALPACA_TRADING_URL points at Alpaca's live trading API ({LIVE_TRADING_HOST}); "
                f"tradeops only trades paper: leave it empty for {PAPER_TRADING_URL}, or point it at a local fake"
            )

    @property
    def trading_base(self) -> str:
        return (self.trading_url or PAPER_TRADING_URL).rstrip("/")

    @property
    def data_base(self) -> str:
        return (self.data_url or DATA_URL).rstrip("/")


def _check_url(setting: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlpacaConfigError(f"{setting}={url!r} is not a URL; e.g. https://paper-api.alpaca.markets")
    if parts.path not in ("", "/"):
        raise AlpacaConfigError(
            f"{setting}={url!r} has a path; give the base URL only (alpaca-py appends /v2/...), "
            "e.g. http://127.0.0.1:8080"
        )
