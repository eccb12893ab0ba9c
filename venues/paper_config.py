"""The paper broker's settings, apart from venues/paper.py so that reading them (bot/settings.py)
loads neither pandas nor the market calendars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum


class FillAt(StrEnum):
    NEXT_OPEN = "next_open"
    QUOTE = "quote"


@dataclass(frozen=True)
class PaperBrokerConfig:
    starting_cash: Mapping[str, Decimal] = field(default_factory=dict)  # currency -> initial deposit
    fill_at: FillAt = FillAt.NEXT_OPEN
    slippage_bps: Decimal = Decimal(5)
    # False only for a backtest's --no-costs run (with slippage 0): fills then pay no fee at all.
    charge_fees: bool = True
    # A market order placed within this long after a bar opened fills at that bar's open.
    order_latency: timedelta = timedelta(minutes=1)
    # How the trader funds a currency with no starting cash, for ``Account.unfunded``; ``{currency}``
    # is replaced by the currency (the application names its setting here).
    unfunded_hint: str = ""
