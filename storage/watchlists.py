"""Watchlists: which symbols of which venue are scanned, on what timeframe, with which risk profile."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.tables import Watchlist

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_SYMBOLS = 2000


class WatchlistSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=64)
    venue: str
    symbols: tuple[str, ...]
    timeframe: str = "15m"
    profile: str = "medium"
    enabled: bool = True
    confirm: tuple[str, ...] = ()  # empty: the scanner's default ladder for the timeframe
    min_score: float = Field(default=0.6, ge=0, le=1)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_SYMBOLS:
            raise ValueError(f"a watchlist holds at most {MAX_SYMBOLS} symbols, got {len(value)}")
        return tuple(dict.fromkeys(value))  # keep order, drop repeats


def valid_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid watchlist name {name[:40]!r}: use 1-32 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def _spec(row: Watchlist) -> WatchlistSpec:
    return WatchlistSpec(
        name=row.name,
        venue=row.venue,
        symbols=tuple(row.symbols),
        timeframe=row.timeframe,
        profile=row.profile,
        enabled=row.enabled,
    )


class WatchlistStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> list[WatchlistSpec]:
        with Session(self.engine) as session:
            return [_spec(r) for r in session.exec(select(Watchlist).order_by(col(Watchlist.name))).all()]

    def get(self, name: str) -> WatchlistSpec | None:
        with Session(self.engine) as session:
            row = session.exec(select(Watchlist).where(Watchlist.name == name)).first()
            return _spec(row) if row else None

    def create(self, spec: WatchlistSpec, *, at: datetime) -> WatchlistSpec:
        valid_name(spec.name)
        try:
            with transaction(self.engine) as session:
                session.add(
                    Watchlist(
                        name=spec.name,
                        venue=spec.venue,
                        symbols=list(spec.symbols),
                        timeframe=spec.timeframe,
                        profile=spec.profile,
                        enabled=spec.enabled,
                        created_at=at,
                        updated_at=at,
                    )
                )
        except IntegrityError:
            raise ValueError(f"a watchlist named {spec.name!r} exists already") from None
        return spec

    def ensure(self, spec: WatchlistSpec, *, at: datetime) -> WatchlistSpec:
        """Create unless a watchlist of that name exists (then the stored one wins)."""
        existing = self.get(spec.name)
        if existing is not None:
            return existing
        try:
            return self.create(spec, at=at)
        except ValueError:
            stored = self.get(spec.name)
            assert stored is not None
            return stored

    def set_symbols(self, name: str, symbols: tuple[str, ...], *, at: datetime) -> WatchlistSpec:
        with transaction(self.engine) as session:
            row = session.exec(select(Watchlist).where(Watchlist.name == name).with_for_update()).first()
            if row is None:
                raise KeyError(name)
            row.symbols = list(WatchlistSpec(name=name, venue=row.venue, symbols=symbols).symbols)
            row.updated_at = at
            session.add(row)
            return _spec(row)

    def delete(self, name: str) -> bool:
        with transaction(self.engine) as session:
            row = session.exec(select(Watchlist).where(Watchlist.name == name)).first()
            if row is None:
                return False
            session.delete(row)
            return True
