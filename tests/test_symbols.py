"""VENUE:SYMBOL resolution (venues/symbols.py): explicit venues, case, perpetual colons, ambiguity."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.support import FrameMarket
from venues.clock import SimulatedClock
from venues.errors import UnknownSymbolError
from venues.models import AssetClass, CryptoFees, Instrument
from venues.symbols import AmbiguousSymbolError, UnknownVenueError, UnlistedSymbolError, resolve_symbol, split_venue


def _market(name: str, *symbols: str) -> FrameMarket:
    instruments = [
        Instrument(
            venue=name,
            symbol=s,
            asset_class=AssetClass.CRYPTO,
            currency="USDT",
            qty_step=Decimal("0.0001"),
            fees=CryptoFees(),
            calendar="24/7",
            timeframe="1m",
            perpetual=":" in s,
        )
        for s in symbols
    ]
    return FrameMarket(name, SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC)), instruments, {})


VENUES = {
    "okx": _market("okx", "BTC/USDT", "BTC/USDT:USDT", "ETH/USDT"),
    "binance": _market("binance", "BTC/USDT", "SOL/USDT"),
    "akshare": _market("akshare", "cu0", "600519.SH"),
}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("okx:BTC/USDT", ("okx", "BTC/USDT")),
        ("OKX:btc/usdt", ("okx", "BTC/USDT")),
        ("binance:BTC/USDT", ("binance", "BTC/USDT")),
        ("BTC/USDT:USDT", ("okx", "BTC/USDT:USDT")),  # the perpetual's own colon is not a venue
        ("okx:BTC/USDT:USDT", ("okx", "BTC/USDT:USDT")),
        ("eth/usdt", ("okx", "ETH/USDT")),
        ("CU0", ("akshare", "cu0")),  # the venue's spelling comes back
        ("600519.sh", ("akshare", "600519.SH")),
    ],
)
async def test_resolves_to_the_venue_and_its_spelling(typed: str, expected: tuple[str, str]) -> None:
    assert await resolve_symbol(VENUES, typed) == expected


async def test_a_symbol_on_two_venues_names_the_choices() -> None:
    with pytest.raises(AmbiguousSymbolError) as caught:
        await resolve_symbol(VENUES, "BTC/USDT")
    assert str(caught.value) == "BTC/USDT is listed by 2 venues; pick one: okx:BTC/USDT, binance:BTC/USDT"
    # A watchlist's own venue settles it.
    assert await resolve_symbol(VENUES, "BTC/USDT", prefer="binance") == ("binance", "BTC/USDT")


async def test_unknown_things_say_what_is_valid() -> None:
    with pytest.raises(UnknownSymbolError, match=r"unknown symbol 'SOL/USDT' on venue 'okx'; valid symbols: BTC/USDT"):
        await resolve_symbol(VENUES, "okx:SOL/USDT")
    with pytest.raises(UnknownVenueError, match=r"unknown venue 'kraken'; venues: akshare, binance, okx"):
        await resolve_symbol(VENUES, "kraken:BTC/USDT")
    with pytest.raises(UnlistedSymbolError, match=r"unknown symbol 'DOGE/USDT': no venue lists it; valid symbols: "):
        await resolve_symbol(VENUES, "DOGE/USDT")


def test_split_venue_only_takes_known_venue_names() -> None:
    assert split_venue("okx:BTC/USDT", VENUES) == ("okx", "BTC/USDT")
    assert split_venue("BTC/USDT:USDT", VENUES) == (None, "BTC/USDT:USDT")
    assert split_venue("kraken:BTC/USDT", VENUES) == (None, "kraken:BTC/USDT")
