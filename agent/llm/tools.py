"""The data tools an LLM may call: read-only views of bars, indicators, the account, today's trades,
option chains (when a venue serves them), the promoted ML model's score, and a preview of what the
risk gate would say about a trade. Arguments are validated with pydantic;
a bad call comes back to the model as a tool error, never as an exception in the graph.

There is no order tool. The decision's only way to trade is its final answer, which the graph
sizes, costs and sends through the deterministic risk gate and the human approval.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agent.deps import AgentDeps
from agent.gather import risk_context
from agent.ml_policy import ML_LOOKBACK_BARS, score_sides
from tools import risk as risk_gate
from tools.indicators import IndicatorSpecError, compute
from tools.models import Action, Signal
from tools.sizing import sized_buy
from venues import calendars
from venues.base import Venue
from venues.errors import VenueError
from venues.models import Account, OrderStatus
from venues.options import OptionRight, OptionsData
from venues.timeframes import TIMEFRAMES

MAX_BARS = 120
MAX_CONTRACTS = 40
MAX_SPECS = 8


def _sig(value: float, digits: int = 6) -> float:
    """Numbers the model reads: a few significant digits are information, the rest are tokens."""
    return float(f"{value:.{digits}g}")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_timeframe(value: str) -> str:
    if value not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {value!r}; valid: {', '.join(TIMEFRAMES)}")
    return value


TimeframeName = Annotated[str, AfterValidator(_known_timeframe)]


class BarsArgs(_Args):
    timeframe: TimeframeName = Field(description="one of " + ", ".join(TIMEFRAMES))
    limit: int = Field(default=30, ge=1, le=MAX_BARS, description=f"how many of the latest bars, at most {MAX_BARS}")
    symbol: str | None = Field(default=None, description="another symbol of the same venue; default: the decision's")


class IndicatorArgs(_Args):
    timeframe: TimeframeName = Field(description="one of " + ", ".join(TIMEFRAMES))
    specs: list[str] = Field(
        min_length=1,
        max_length=MAX_SPECS,
        description='e.g. ["rsi:14", "ema:20", "macd:12,26,9", "atr:14", "bbands:20,2", "adx:14", "sma:50", "obv"]',
    )
    symbol: str | None = None


class NoArgs(_Args):
    pass


class OptionChainArgs(_Args):
    underlying: str | None = Field(default=None, description="the underlying stock; default: the decision's symbol")
    expiry: date | None = Field(default=None, description="YYYY-MM-DD; default: the nearest expiry")
    right: OptionRight | None = Field(default=None, description="call or put; default: both")
    band_pct: float = Field(
        default=5.0, gt=0, le=50, description="strikes within this many percent of the underlying's last price"
    )


class ModelScoreArgs(_Args):
    symbol: str | None = Field(default=None, description="another symbol of the same venue; default: the decision's")


class PreviewArgs(_Args):
    entry: float = Field(gt=0)
    stop: float = Field(gt=0)
    take_profits: list[float] = Field(min_length=1, max_length=3)
    horizon_bars: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="time stop in bars (0 = none): a perpetual's funding the BUY pays is counted over it",
    )


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[_Args]
    run: Callable[[Any], Awaitable[dict[str, Any]]]

    def spec(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }


class ToolError(Exception):
    """A tool call the model got wrong: its message goes back to the model."""


class Toolbox:
    """The tools of one decision (its venue and symbol are the defaults), or of /ask (no defaults:
    every call names its symbol, and the account tools cover every venue)."""

    def __init__(
        self, deps: AgentDeps, venue: str | None = None, symbol: str | None = None, timeframe: str | None = None
    ) -> None:
        self.deps = deps
        self.venue_name = venue
        self.symbol = symbol
        self.timeframe = timeframe  # the decision's: what a preview's horizon_bars count in
        self.unknown_calls: list[str] = []
        market = [
            Tool("get_bars", "Latest final OHLCV bars (oldest first) of a symbol.", BarsArgs, self._bars),
            Tool(
                "get_indicators",
                "Latest values of indicators over a timeframe, plus their values 5 bars earlier.",
                IndicatorArgs,
                self._indicators,
            ),
        ]
        if symbol is not None:
            own = [
                Tool("get_position", "The position held in the decision's symbol.", NoArgs, self._position),
                Tool(
                    "get_account",
                    "Cash and equity of the paper account in the symbol's currency.",
                    NoArgs,
                    self._account,
                ),
                Tool(
                    "get_todays_trades", "Orders placed today on this venue (the feedback loop).", NoArgs, self._trades
                ),
                Tool(
                    "preview_trade",
                    "What a BUY at these prices would be: size, costs, expected net profit, reward/risk, "
                    "and the risk gate's verdict. Read-only: nothing is ordered.",
                    PreviewArgs,
                    self._preview,
                ),
            ]
        else:
            own = [
                Tool("list_symbols", "The symbols of every venue, with their finest timeframe.", NoArgs, self._symbols),
                Tool("get_positions", "Open positions on every venue.", NoArgs, self._positions),
                Tool("get_accounts", "Cash and equity of every paper account.", NoArgs, self._accounts),
            ]
        if any(isinstance(v, OptionsData) for v in deps.venues.values()):
            market.append(
                Tool(
                    "option_chain",
                    "Option contracts of a stock near its price: OCC symbol, right, strike, bid, ask, implied "
                    "volatility and Greeks (delta, gamma, theta, vega), for one expiry. Read-only.",
                    OptionChainArgs,
                    self._option_chain,
                )
            )
        if deps.load_model is not None:
            market.append(
                Tool(
                    "model_score",
                    "The promoted ML model's calibrated probability that a long entered at the next bar's open "
                    "reaches TP1 before its stop, net of costs, on the latest bar of its timeframe; with the "
                    "model id, its signal threshold and the features that moved the score most (log-odds); "
                    "probability_short: the same for a short, where the model has a short side and the "
                    "symbol may be sold short. Read-only.",
                    ModelScoreArgs,
                    self._model_score,
                )
            )
        self.tools = {t.name: t for t in (*market, *own)}

    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    async def call(self, name: str, raw_arguments: str | None) -> dict[str, Any]:
        """Run one tool call; every problem becomes an error the model can read and correct."""
        tool = self.tools.get(name)
        if tool is None:
            self.unknown_calls.append(name)
            return {"error": f"unknown tool {name!r}; tools: {', '.join(self.tools)}"}
        try:
            arguments = json.loads(raw_arguments or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
            args = tool.args.model_validate(arguments)
        except (ValueError, ValidationError) as exc:
            return {"error": f"bad arguments for {name}: {_short(exc)}"}
        try:
            return await tool.run(args)
        except (ToolError, VenueError, IndicatorSpecError) as exc:
            return {"error": str(exc)}

    # --- the tools ---

    async def _where(self, symbol: str | None) -> tuple[Venue, str]:
        """The venue and symbol a call is about: the decision's by default; else the venue that lists it."""
        if symbol is None:
            if self.symbol is None or self.venue_name is None:
                raise ToolError("name the symbol: this conversation is not about one symbol")
            return self.deps.venue(self.venue_name), self.symbol
        names = [self.venue_name] if self.venue_name else []
        names += [n for n in self.deps.venues if n not in names]
        known: list[str] = []
        for name in names:
            venue = self.deps.venue(name)
            symbols = [i.symbol for i in await venue.instruments()]
            if symbol in symbols:
                return venue, symbol
            known.extend(symbols)
        raise ToolError(f"unknown symbol {symbol!r}; known: {', '.join(sorted(set(known)))}")

    async def _bars(self, args: BarsArgs) -> dict[str, Any]:
        venue, symbol = await self._where(args.symbol)
        bars = await venue.bars(symbol, args.timeframe, limit=args.limit)
        rows = [
            [ts.strftime("%Y-%m-%d %H:%M"), _sig(o), _sig(h), _sig(lo), _sig(c), _sig(v, 4)]
            for ts, o, h, lo, c, v in zip(
                bars["close_time"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], strict=True
            )
        ]
        return {"symbol": symbol, "timeframe": args.timeframe, "columns": "close_time UTC,o,h,l,c,v", "bars": rows}

    async def _option_chain(self, args: OptionChainArgs) -> dict[str, Any]:
        venue, symbol = await self._where(args.underlying)
        if not isinstance(venue, OptionsData):
            served = [n for n, v in self.deps.venues.items() if isinstance(v, OptionsData)]
            raise ToolError(f"{venue.name} serves no option chains; venues that do: {', '.join(served)}")
        quote = (await venue.snapshot([symbol])).get(symbol)
        if quote is None:
            raise ToolError(f"no price of {symbol} yet to centre the chain on")
        band = Decimal(str(args.band_pct / 100))
        last = Decimal(str(quote.last))
        chain = await venue.option_chain(
            symbol, expiry=args.expiry, right=args.right, strike_min=last * (1 - band), strike_max=last * (1 + band)
        )
        if not chain:
            raise ToolError(
                f"no {symbol} options within {args.band_pct}% of {quote.last}"
                + (f" expiring {args.expiry.isoformat()}" if args.expiry else "")
            )
        expiry = chain[0].expiry  # the nearest asked (the chain is sorted by expiry)
        rows = [
            [
                q.symbol,
                q.right.value,
                float(q.strike),
                q.bid,
                q.ask,
                q.implied_volatility,
                q.delta,
                q.gamma,
                q.theta,
                q.vega,
            ]
            for q in chain
            if q.expiry == expiry
        ][:MAX_CONTRACTS]
        return {
            "underlying": symbol,
            "last": _sig(quote.last),
            "expiry": expiry.isoformat(),
            "columns": "symbol,right,strike,bid,ask,iv,delta,gamma,theta,vega",
            "contracts": rows,
        }

    async def _model_score(self, args: ModelScoreArgs) -> dict[str, Any]:
        load = self.deps.load_model
        assert load is not None  # the tool is only offered with a loader
        try:
            model = await asyncio.to_thread(load)
        except Exception as exc:  # the registry's message: none promoted, a file missing or corrupt
            raise ToolError(f"no model score: {exc}") from None
        venue, symbol = await self._where(args.symbol)
        timeframe = str(model.card.get("timeframe", ""))
        if timeframe not in TIMEFRAMES:
            raise ToolError(f"model {model.id} has no known timeframe in its card")
        instrument = await venue.instrument(symbol)
        bars = await venue.bars(symbol, timeframe, limit=ML_LOOKBACK_BARS)
        short = model.short if instrument.short_refusal() is None else None
        scored = await asyncio.to_thread(score_sides, model, short, bars, timeframe, instrument.calendar)
        if isinstance(scored, str):
            raise ToolError(f"model {model.id} cannot score {symbol}: {scored}")
        probability, _, contributions = scored["long"]
        answer = {
            "model_id": model.id,
            "symbol": symbol,
            "timeframe": timeframe,
            "as_of": bars["close_time"].iloc[-1].strftime("%Y-%m-%d %H:%M UTC"),
            "probability": round(probability, 3),
            "threshold": float(model.card["threshold"]),
            "trained_on": list(model.card.get("symbols", [])),
            "top_contributions": {name: _sig(value, 3) for name, value in contributions},
        }
        if "short" in scored:  # the short side's model, where the instrument may be sold short
            answer["probability_short"] = round(scored["short"][0], 3)
        return answer

    async def _indicators(self, args: IndicatorArgs) -> dict[str, Any]:
        venue, symbol = await self._where(args.symbol)
        bars = await venue.bars(symbol, args.timeframe, limit=300)
        if bars.empty:
            raise ToolError(f"no {args.timeframe} bars for {symbol} yet")
        values = compute(bars, args.specs)
        latest = values.iloc[-1]
        earlier = values.iloc[-6] if len(values) >= 6 else latest
        return {
            "symbol": symbol,
            "timeframe": args.timeframe,
            "as_of": bars["close_time"].iloc[-1].strftime("%Y-%m-%d %H:%M UTC"),
            "latest": {k: _sig(float(v)) for k, v in latest.items() if v == v},
            "5_bars_earlier": {k: _sig(float(v)) for k, v in earlier.items() if v == v},
        }

    async def _position(self, args: NoArgs) -> dict[str, Any]:
        venue, symbol = await self._where(None)
        held = next((p for p in await venue.broker_required().positions() if p.symbol == symbol), None)
        if held is None:
            return {"symbol": symbol, "qty": "0"}
        return {"symbol": symbol, "qty": str(held.qty), "avg_cost": str(round(held.avg_cost, 6))}

    async def _account(self, args: NoArgs) -> dict[str, Any]:
        venue, symbol = await self._where(None)
        instrument = await venue.instrument(symbol)
        return _account_view(await venue.broker_required().account(instrument.currency))

    async def _symbols(self, args: NoArgs) -> dict[str, Any]:
        return {
            name: [f"{i.symbol} ({i.timeframe})" for i in await venue.instruments()]
            for name, venue in self.deps.venues.items()
        }

    async def _positions(self, args: NoArgs) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, venue in self.deps.venues.items():
            out[name] = [
                {
                    "symbol": p.symbol,
                    "qty": str(p.qty),
                    "avg_cost": str(round(p.avg_cost, 6)),
                    "realized_pnl": str(round(p.realized_pnl, 2)),
                }
                for p in await venue.broker_required().positions()
            ]
        return out

    async def _accounts(self, args: NoArgs) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, venue in self.deps.venues.items():
            broker = venue.broker_required()
            currencies = sorted({i.currency for i in await venue.instruments()})
            accounts = [await broker.account(c) for c in currencies]
            # An exchange quotes in dozens of currencies: only those the paper account holds count.
            out[name] = [_account_view(a) for a in accounts if not a.unfunded]
        return out

    async def _trades(self, args: NoArgs) -> dict[str, Any]:
        venue, symbol = await self._where(None)
        instrument = await venue.instrument(symbol)
        today = calendars.trading_day(instrument.calendar, self.deps.clock.now())
        orders = [
            o
            for o in await venue.broker_required().orders()
            if calendars.trading_day(instrument.calendar, o.created_at) == today
        ]
        return {
            "trading_day": today.isoformat(),
            "orders": [
                {
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "qty": str(o.qty),
                    "status": o.status.value,
                    "at": o.created_at.strftime("%H:%M UTC"),
                }
                for o in orders
                if o.status is not OrderStatus.CANCELLED
            ],
        }

    async def _preview(self, args: PreviewArgs) -> dict[str, Any]:
        venue, symbol = await self._where(None)
        instrument = await venue.instrument(symbol)
        try:
            signal = Signal(
                action=Action.BUY,
                symbol=symbol,
                entry=Decimal(repr(args.entry)),
                stop=Decimal(repr(args.stop)),
                take_profits=tuple(Decimal(repr(t)) for t in args.take_profits),
                horizon_bars=args.horizon_bars,
                timeframe=self.timeframe or instrument.timeframe,
                confidence=1.0,
            )
        except ValidationError as exc:
            raise ToolError(f"not a valid BUY: {_short(exc)}") from None
        config = self.deps.config
        profile = config.risk_for(venue.name)
        context = await risk_context(self.deps, venue_name=venue.name, symbol=symbol, timeframe=instrument.timeframe)
        account = await venue.broker_required().account(instrument.currency)
        proposal = sized_buy(
            signal,
            instrument,
            equity=context.equity,
            available_cash=account.available_cash,
            risk_per_trade_pct=profile.risk_per_trade_pct,
            max_position_pct=profile.max_position_pct,
            slippage_bps=config.slippage_bps,
            on=calendars.trading_day(instrument.calendar, self.deps.clock.now()),
            exit_weights=config.exit_weights,
        )
        verdict, proposal = risk_gate.check(proposal, context, profile, instrument, slippage_bps=config.slippage_bps)
        return {
            "qty": str(proposal.qty),
            "notional": str(round(proposal.notional, 2)),
            "costs_round_trip": str(round(proposal.fees_round_trip, 2)),
            "expected_net_profit": str(round(proposal.expected_net_profit, 2)),
            "loss_at_stop": str(round(proposal.loss_at_stop, 2)),
            "reward_risk": round(proposal.reward_risk, 2),
            "risk_gate": verdict.decision,
            "blocked_by": verdict.reasons,
            "note": "confidence is not judged here; the gate applies its minimum to your answer",
        }


def _account_view(account: Account) -> dict[str, Any]:
    return {
        "currency": account.currency,
        "equity": str(round(account.equity, 2)),
        "available_cash": str(round(account.available_cash, 2)),
        "positions": [p.symbol for p in account.positions],
    }


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:4])
    return str(exc)[:300]
