"""What a user types for a symbol, resolved to (venue, the venue's own symbol).

A symbol is the venue's own spelling (``BTC/USDT``, ``BTC/USDT:USDT`` for a USDT perpetual,
``AAPL``, ``SPY240419C00500000``, ``600519.SH``, ``cu0``); ``VENUE:SYMBOL`` picks the venue
explicitly (``okx:BTC/USDT``, ``alpaca:SPY``). Matching is case-insensitive; the answer carries
the venue's spelling. A bare symbol listed by more than one venue is an error naming the choices.
"""

from __future__ import annotations

from collections.abc import Mapping

from venues.base import MarketData
from venues.errors import UnknownSymbolError, VenueError, choices


class AmbiguousSymbolError(VenueError):
    def __init__(self, symbol: str, venues: list[str]) -> None:
        self.symbol = symbol
        self.venues = venues
        choices = ", ".join(f"{v}:{symbol}" for v in venues)
        super().__init__(f"{symbol} is listed by {len(venues)} venues; pick one: {choices}")


class UnknownVenueError(VenueError):
    def __init__(self, venue: str, valid: list[str]) -> None:
        self.venue = venue
        super().__init__(f"unknown venue {venue[:32]!r}; venues: {', '.join(valid) or 'none configured'}")


class UnlistedSymbolError(VenueError):
    def __init__(self, symbol: str, valid: list[str]) -> None:
        self.symbol = symbol
        super().__init__(f"unknown symbol {symbol[:32]!r}: no venue lists it; valid symbols: {choices(valid)}")


def split_venue(text: str, venues: Mapping[str, object]) -> tuple[str | None, str]:
    """("okx", "BTC/USDT") for "okx:BTC/USDT" when okx is a venue name (case-insensitive); (None,
    text) otherwise, so "BTC/USDT:USDT" stays one symbol."""
    prefix, sep, rest = text.partition(":")
    if sep:
        names = {name.lower(): name for name in venues}
        if prefix.lower() in names:
            return names[prefix.lower()], rest
    return None, text


async def _spelling(venue: MarketData, symbol: str) -> str | None:
    wanted = symbol.upper()
    for instrument in await venue.instruments():
        if instrument.symbol.upper() == wanted:
            return instrument.symbol
    return None


async def resolve_symbol(venues: Mapping[str, MarketData], text: str, *, prefer: str | None = None) -> tuple[str, str]:
    """(venue name, symbol as the venue spells it). ``prefer``: the venue to take a bare symbol from
    when it lists it (a watchlist's own venue). Raises UnknownVenueError, UnknownSymbolError (naming
    the valid symbols) or AmbiguousSymbolError (naming the choices)."""
    explicit, symbol = split_venue(text.strip(), venues)
    if explicit is not None:
        found = await _spelling(venues[explicit], symbol)
        if found is None:
            raise UnknownSymbolError(symbol, explicit, [i.symbol for i in await venues[explicit].instruments()])
        return explicit, found
    if prefer is not None and prefer in venues and (found := await _spelling(venues[prefer], symbol)) is not None:
        return prefer, found
    matches: list[tuple[str, str]] = []
    for name, venue in venues.items():
        if (found := await _spelling(venue, symbol)) is not None:
            matches.append((name, found))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousSymbolError(matches[0][1], [name for name, _ in matches])
    prefix, sep, _ = symbol.partition(":")
    if sep and prefix.replace("-", "").replace("_", "").isalnum() and "/" not in prefix:
        raise UnknownVenueError(prefix, sorted(venues))
    known = [i.symbol for venue in venues.values() for i in await venue.instruments()]
    raise UnlistedSymbolError(symbol, known)
