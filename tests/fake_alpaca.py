"""A local fake of Alpaca's trading and market-data APIs for alpaca-py's ``url_override``.

It answers with the recorded bodies of tests/fixtures/alpaca (alpaca-py's own test payloads) where
one fits as is (the account), and builds the rest in the recorded shapes: assets from the recorded
asset, bars from the shipped real Alpaca bars in venues/replay/data cut at the fake's ``now`` (the
bar still forming included, as Alpaca serves it), pages with ``next_page_token`` in Alpaca's readable
form, snapshots per symbol, orders and positions of a session, the market clock from the XNYS
calendar. Faults on demand: an HTTP status (429 with Retry-After, 5xx, 401 ...) for the next n
requests of a route, optionally after doing the work (an order placed, then 429); a slow answer
(for timeouts); a paging gap; bad keys (any key but the fake's gets a 401); an unknown symbol in a
batch gets a 400 for the whole batch, as Alpaca answers an invalid symbol, and a listed symbol
whose bars are refused (``refused_bars``) a 422 for the whole batch.

It runs an aiohttp server on 127.0.0.1 in its own thread (alpaca-py is synchronous and is called
from worker threads, and the CLI runs its own event loop), stopped by its handle.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from aiohttp import web

from venues.adapters.alpaca.parse import make_page_token, page_token_position
from venues.calendars import get_calendar
from venues.options import is_occ_symbol
from venues.replay.catalog import DATA_DIR
from venues.replay.loader import load_bar_file

if TYPE_CHECKING:
    from bot.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"
KEY_ID, SECRET = "PKTEST0FAKE0KEY", "fake-secret-not-a-real-one"


def alpaca_settings(fake: FakeAlpaca, data_dir: Path, **more: Any) -> Settings:
    """Settings whose alpaca venue is ``fake`` (its keys, both of its URLs, a rate limit no test
    waits on), the data in ``data_dir``, and ``more``."""
    from bot.settings import load_settings

    return load_settings(
        data_dir=data_dir,
        alpaca_api_key=KEY_ID,
        alpaca_secret_key=SECRET,
        alpaca_trading_url=fake.url,
        alpaca_data_url=fake.url,
        alpaca_rate_per_second=100.0,
        **more,
    )


_RECORDED_TRADING = json.loads((FIXTURES / "alpaca_trading_api_responses.json").read_text())
_RECORDED_DATA = json.loads((FIXTURES / "alpaca_market_data_responses.json").read_text())
NY = "America/New_York"
_TF = {"1Min": "1min", "5Min": "5min", "15Min": "15min", "30Min": "30min", "1Hour": "1h", "4Hour": "4h"}


def recorded(kind: str, name: str) -> Any:
    """A deep copy of a recorded response body (``kind`` "trading" or "data")."""
    source = _RECORDED_TRADING if kind == "trading" else _RECORDED_DATA
    return copy.deepcopy(source[name]["response"])


def shipped_bars() -> dict[str, pd.DataFrame]:
    """The shipped real Alpaca bars: AMZN (1h, extended hours) and SPY (1m), July 2021 for SPY."""
    return {
        "AMZN": load_bar_file(DATA_DIR / "AMZN_1h_2021_alpaca.csv", timeframe="1h", calendar="XNYS"),
        "SPY": load_bar_file(DATA_DIR / "SPY_1m_2021-07-01_2021-08-13_lumibot.csv", timeframe="1m", calendar="XNYS"),
    }


@dataclass
class Fault:
    status: int
    times: int = 1
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    after_work: bool = False  # do what the request asks, then answer with the fault


@dataclass
class FakeAlpaca:
    now: Callable[[], datetime]
    bars: dict[str, pd.DataFrame] = field(default_factory=shipped_bars)
    page_size: int = 10_000  # at most this many bars a page, whatever the limit asked
    extra_assets: tuple[str, ...] = ()  # listed symbols with no bars
    refused_bars: frozenset[str] = frozenset()  # listed, but a bars request naming one gets a 422
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, query)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by client_order_id
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    gap_once: bool = False  # the next bars page token skips ahead
    # latestQuote of an option contract, replacing the priced one (None: the contract has no quote)
    option_quotes: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    port: int = 0
    _derived: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)

    # --- test controls ---

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self, route: str, status: int, *, times: int = 1, retry_after: str | None = None, after_work=False
    ) -> None:
        body = {"code": status * 100000 + 1, "message": {429: "too many requests."}.get(status, f"fake {status}")}
        self.faults.setdefault(route, []).append(Fault(status, times, retry_after, body, after_work))

    def slow(self, route: str, seconds: float) -> None:
        self.delays[route] = seconds

    # --- data ---

    def frame(self, symbol: str, timeframe: str) -> pd.DataFrame:
        key = (symbol, timeframe)
        if key not in self._derived:
            source = self.bars[symbol][["open", "high", "low", "close", "volume"]]
            agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
            if timeframe == "1Day":  # the New York day, stamped at its midnight as Alpaca does
                local = source.copy()
                local.index = local.index.tz_convert(NY).normalize()
                out = local.groupby(level=0).agg(agg)
                out.index = out.index.tz_convert("UTC")
            else:
                out = source.resample(_TF[timeframe], origin="epoch", label="left", closed="left").agg(agg)
                out = out[out["open"].notna()]
            self._derived[key] = out
        return self._derived[key]

    def _visible(self, symbol: str, timeframe: str) -> pd.DataFrame:
        source = pd.Timedelta(self.bars[symbol].index.to_series().diff().min())
        if timeframe != "1Day" and pd.Timedelta(_TF[timeframe]) < source:
            return self.frame(symbol, timeframe).iloc[0:0]  # no finer bars than recorded
        frame = self.frame(symbol, timeframe)
        return frame[frame.index <= pd.Timestamp(self.now())]  # the forming bar included

    def _asset(self, symbol: str) -> dict[str, Any]:
        asset = recorded("trading", "get_asset")
        asset.update(symbol=symbol, name=f"{symbol} (fake)", id=str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)))
        asset["attributes"] = []
        return asset

    def _last_price(self, symbol: str) -> float:
        frame = self.bars[symbol]
        done = frame[frame["close_time"] <= pd.Timestamp(self.now())]
        if done.empty:
            raise web.HTTPBadRequest(text=json.dumps({"code": 42210000, "message": f"no trade of {symbol} yet"}))
        return float(done["close"].iloc[-1])

    def option_price(self, symbol: str) -> float:
        """The Black-Scholes price (flat 20% volatility) of an OCC contract at the fake's now."""
        underlying = symbol[:-15]
        expiry = datetime.strptime(symbol[-15:-9], "%y%m%d").date()
        now = pd.Timestamp(self.now())
        years = max((pd.Timestamp(expiry, tz="UTC") + pd.Timedelta(hours=20) - now).total_seconds(), 60) / 31_557_600
        price, _ = _black_scholes(self._last_price(underlying), int(symbol[-8:]) / 1000, years, 0.2, symbol[-9] == "C")
        return price

    def _fill_legs(self, order: dict[str, Any]) -> None:
        """A multi-leg order fills at once: a market one at the legs' model prices (net, per unit),
        a limit one at its limit when the model's net is no worse."""
        prices = [self.option_price(leg["symbol"]) for leg in order["legs"]]
        net = sum(
            p * float(leg.get("ratio_qty") or 1) * (1 if leg["side"] == "buy" else -1)
            for p, leg in zip(prices, order["legs"], strict=True)
        )
        if order["type"] == "limit":
            if net > float(order["limit_price"]):
                return
            net = float(order["limit_price"])
        for price, leg in zip(prices, order["legs"], strict=True):
            leg["filled_avg_price"] = str(round(price, 2))
        order.update(
            status="filled",
            filled_qty=str(order["qty"]),
            filled_avg_price=str(round(net, 2)),
            filled_at=pd.Timestamp(self.now()).isoformat(),
        )

    # --- the server ---

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v2/assets", self._assets)
        r.add_get("/v2/assets/{symbol}", self._asset_one)
        r.add_get("/v2/clock", self._clock)
        r.add_get("/v2/account", self._account)
        r.add_get("/v2/positions", self._positions)
        r.add_post("/v2/orders", self._submit)
        r.add_get("/v2/orders", self._list_orders)
        r.add_get("/v2/orders:by_client_order_id", self._by_client_id)
        r.add_delete("/v2/orders/{order_id}", self._cancel)
        r.add_get("/v2/stocks/bars", self._stock_bars)
        r.add_get("/v2/stocks/snapshots", self._snapshots)
        r.add_get("/v1beta1/options/snapshots/{underlying}", self._option_chain)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        route = f"{request.method} {route}"
        self.hits[route] += 1
        self.requests.append((request.method, request.path, dict(request.query)))
        if request.headers.get("APCA-API-KEY-ID") != KEY_ID or request.headers.get("APCA-API-SECRET-KEY") != SECRET:
            return web.json_response({"code": 40110000, "message": "request is not authorized"}, status=401)
        if route in self.delays:
            await asyncio.sleep(self.delays[route])
        fault = None
        queue = self.faults.get(route)
        if queue:
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        if fault is not None and not fault.after_work:
            return self._fault(fault)
        response = await handler(request)
        return self._fault(fault) if fault is not None else response

    @staticmethod
    def _fault(fault: Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        return web.json_response(fault.body, status=fault.status, headers=headers)

    async def _assets(self, request: web.Request) -> web.Response:
        return web.json_response([self._asset(s) for s in [*self.bars, *self.extra_assets]])

    async def _asset_one(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        if symbol not in self.bars and symbol not in self.extra_assets:
            return web.json_response({"code": 40410000, "message": f"asset not found for {symbol}"}, status=404)
        return web.json_response(self._asset(symbol))

    async def _clock(self, request: web.Request) -> web.Response:
        cal = get_calendar("XNYS")
        now = pd.Timestamp(self.now()).floor("min")
        is_open = bool(cal.is_open_on_minute(now))
        next_open = cal.next_open(now)
        next_close = cal.next_close(now)
        local = pd.Timestamp(self.now()).tz_convert(NY)
        return web.json_response(
            {
                "timestamp": local.isoformat(),
                "is_open": is_open,
                "next_open": next_open.tz_convert(NY).isoformat(),
                "next_close": next_close.tz_convert(NY).isoformat(),
            }
        )

    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response(recorded("trading", "get_account"))

    async def _positions(self, request: web.Request) -> web.Response:
        held: dict[str, Decimal] = {}
        cost: dict[str, Decimal] = {}
        for order in self._fill_due():
            if order["status"] != "filled":
                continue
            fills = [(order["symbol"], order["side"], Decimal(order["filled_qty"]), order["filled_avg_price"])]
            if order.get("legs"):  # a multi-leg order: a position per leg, as Alpaca keeps them
                units = Decimal(order["filled_qty"])
                fills = [
                    (
                        leg["symbol"],
                        leg["side"],
                        units * Decimal(str(leg.get("ratio_qty") or 1)),
                        leg["filled_avg_price"],
                    )
                    for leg in order["legs"]
                ]
            for symbol, side, filled, price in fills:
                qty = filled * (1 if side == "buy" else -1)
                held[symbol] = held.get(symbol, Decimal(0)) + qty
                cost[symbol] = cost.get(symbol, Decimal(0)) + qty * Decimal(price)
        out = []
        template = recorded("trading", "get_all_positions")[0]
        for symbol, qty in held.items():
            if qty == 0:
                continue
            option = is_occ_symbol(symbol)
            price = Decimal(str(round(self.option_price(symbol), 2) if option else self._last_price(symbol)))
            value = qty * price * (100 if option else 1)
            row = dict(template, symbol=symbol, qty=str(abs(qty)), side="long" if qty > 0 else "short")
            row.update(avg_entry_price=str(cost[symbol] / qty), current_price=str(price), market_value=str(value))
            if option:
                row.update(asset_class="us_option")
            out.append(row)
        return web.json_response(out)

    def _fill_due(self) -> list[dict[str, Any]]:
        """Alpaca's paper account fills a market order at once in market hours; here, at the
        last final bar's close when it is next looked at."""
        for order in self.orders.values():
            if order["status"] in ("accepted", "new") and order.get("order_class") == "mleg":
                self._fill_legs(order)
                continue
            if order["status"] in ("accepted", "new") and order["type"] == "market" and order["symbol"] in self.bars:
                price = self._last_price(order["symbol"])
                stamp = pd.Timestamp(self.now()).isoformat()
                order.update(
                    status="filled", filled_qty=str(order["qty"]), filled_avg_price=str(price), filled_at=stamp
                )
        return list(self.orders.values())

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        client_id = body.get("client_order_id") or str(uuid.uuid4())
        if client_id in self.orders:
            return web.json_response({"code": 40010001, "message": "client_order_id must be unique"}, status=422)
        symbols = [leg["symbol"] for leg in body.get("legs") or []] or [body.get("symbol")]
        for symbol in symbols:
            root = str(symbol)[:-15] if is_occ_symbol(str(symbol)) else symbol
            if root not in self.bars and root not in self.extra_assets:
                return web.json_response({"code": 42210000, "message": f'asset "{symbol}" not found'}, status=422)
        order = recorded("trading", "market_order")
        stamp = pd.Timestamp(self.now()).isoformat()
        order.update(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=body.get("symbol") or "",
            legs=body.get("legs"),
            qty=str(body.get("qty")),
            side=body.get("side") or "buy",  # an mleg order has sides per leg
            type=body["type"],
            order_type=body["type"],
            order_class=body.get("order_class") or "simple",
            time_in_force=body.get("time_in_force", "day"),
            limit_price=body.get("limit_price"),
            stop_price=body.get("stop_price"),
            created_at=stamp,
            updated_at=stamp,
            submitted_at=stamp,
            status="accepted",
        )
        self.orders[client_id] = order
        return web.json_response(order)

    async def _list_orders(self, request: web.Request) -> web.Response:
        return web.json_response(self._fill_due())

    async def _by_client_id(self, request: web.Request) -> web.Response:
        self._fill_due()
        found = self.orders.get(request.query.get("client_order_id", ""))
        if found is None:
            return web.json_response({"code": 40410000, "message": "order not found"}, status=404)
        return web.json_response(found)

    async def _cancel(self, request: web.Request) -> web.Response:
        for order in self.orders.values():
            if order["id"] == request.match_info["order_id"]:
                if order["status"] in ("filled", "canceled"):
                    return web.json_response(
                        {"code": 42210000, "message": f"order is already {order['status']}"}, status=422
                    )
                order.update(status="canceled", canceled_at=pd.Timestamp(self.now()).isoformat())
                return web.Response(status=204)
        return web.json_response({"code": 40410000, "message": "order not found"}, status=404)

    def _unknown(self, symbols: list[str]) -> web.Response | None:
        bad = [s for s in symbols if s not in self.bars and s not in self.extra_assets]
        if bad:
            return web.json_response({"code": 40010001, "message": f"invalid symbol: {bad[0]}"}, status=400)
        return None

    async def _stock_bars(self, request: web.Request) -> web.Response:
        q = request.query
        symbols = [s for s in q.get("symbols", "").split(",") if s]
        if (refused := self._unknown(symbols)) is not None:
            return refused
        if bad := sorted(self.refused_bars.intersection(symbols)):  # the whole batch fails, as for an invalid one
            return web.json_response({"code": 42210000, "message": f"no bars served for {bad[0]}"}, status=422)
        timeframe = q["timeframe"]
        if timeframe not in _TF and timeframe != "1Day":
            return web.json_response({"code": 42210000, "message": f"invalid timeframe {timeframe}"}, status=422)
        desc = q.get("sort") == "desc"
        items: list[tuple[str, pd.Timestamp, dict[str, Any]]] = []
        for symbol in sorted(symbols):
            frame = self._visible(symbol, timeframe) if symbol in self.bars else self.frame(symbol, timeframe).iloc[0:0]
            if "start" in q:
                frame = frame[frame.index >= pd.Timestamp(q["start"])]
            if "end" in q:
                frame = frame[frame.index <= pd.Timestamp(q["end"])]
            rows = frame.iloc[::-1] if desc else frame
            # Column arrays rather than iterrows: a batch page holds thousands of bars.
            columns = (rows[c].to_numpy().tolist() for c in ("open", "high", "low", "close", "volume"))
            stamps = rows.index.strftime("%Y-%m-%dT%H:%M:%SZ")
            for ts, t, o, h, low, c, v in zip(rows.index, stamps, *columns, strict=True):
                items.append((symbol, ts, {"t": t, "o": o, "h": h, "l": low, "c": c, "v": int(v), "n": 1, "vw": c}))
        start = 0
        if "page_token" in q:
            position = page_token_position(q["page_token"])
            assert position is not None, "the fake only issues readable tokens"
            symbol, moment = position
            at = pd.Timestamp(moment)
            start = next((i + 1 for i, (s, ts, _) in enumerate(items) if s == symbol and ts == at), len(items))
        limit = min(int(q.get("limit", 1000)), self.page_size)
        page = items[start : start + limit]
        token = None
        if start + limit < len(items) and page:
            last_symbol, last_ts, _ = page[-1]
            if self.gap_once:  # claim the page ended five bars later than it did
                self.gap_once = False
                skip = items[min(start + limit + 4, len(items) - 1)]
                last_symbol, last_ts = skip[0], skip[1]
            token = make_page_token(last_symbol, last_ts.to_pydatetime())
        served: dict[str, list[dict[str, Any]]] = {}
        for symbol, _, bar in page:
            served.setdefault(symbol, []).append(bar)
        return web.json_response({"bars": served, "next_page_token": token})

    async def _snapshots(self, request: web.Request) -> web.Response:
        symbols = [s for s in request.query.get("symbols", "").split(",") if s]
        if (refused := self._unknown(symbols)) is not None:
            return refused
        template = recorded("data", "get_snapshot")["AAPL"]
        out: dict[str, Any] = {}
        now = pd.Timestamp(self.now())
        for symbol in symbols:
            if symbol not in self.bars:
                out[symbol] = None
                continue
            daily = self.frame(symbol, "1Day")
            done = self.bars[symbol][self.bars[symbol]["close_time"] <= now]
            if done.empty:
                out[symbol] = None
                continue
            last = float(done["close"].iloc[-1])
            day = daily[daily.index <= now]
            snap = copy.deepcopy(template)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            snap["latestTrade"].update(t=stamp, p=last)
            snap["latestQuote"].update(t=stamp, bp=round(last - 0.01, 2), ap=round(last + 0.01, 2))
            snap["minuteBar"].update(t=done.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"), c=last)
            today = day.iloc[-1]
            snap["dailyBar"].update(t=day.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"), c=last, v=int(today["volume"]))
            if len(day) > 1:
                snap["prevDailyBar"].update(
                    t=day.index[-2].strftime("%Y-%m-%dT%H:%M:%SZ"), c=float(day["close"].iloc[-2])
                )
            else:
                snap["prevDailyBar"] = None
            out[symbol] = snap
        return web.json_response(out)

    async def _option_chain(self, request: web.Request) -> web.Response:
        """No chain was recorded: one is made in the documented shape (latestQuote, latestTrade,
        impliedVolatility, greeks) around the underlying's last price, priced by Black-Scholes at
        a flat 20% volatility, for the next two Friday expiries, strikes +-5 in 1 USD steps."""
        underlying = request.match_info["underlying"]
        if (refused := self._unknown([underlying])) is not None:
            return refused
        q = request.query
        spot = self._last_price(underlying)
        now = pd.Timestamp(self.now())
        fridays = [
            d.date() for d in pd.date_range(now.normalize() + pd.Timedelta(days=1), periods=14) if d.weekday() == 4
        ]
        out: dict[str, Any] = {}
        for expiry in fridays[:2]:
            years = (
                max((pd.Timestamp(expiry, tz="UTC") + pd.Timedelta(hours=20) - now).total_seconds(), 60) / 31_557_600
            )
            for strike in range(round(spot) - 5, round(spot) + 6):
                for right in ("C", "P"):
                    symbol = f"{underlying}{expiry:%y%m%d}{right}{strike * 1000:08d}"
                    if "type" in q and q["type"][0].upper() != right:
                        continue
                    if "strike_price_gte" in q and strike < float(q["strike_price_gte"]):
                        continue
                    if "strike_price_lte" in q and strike > float(q["strike_price_lte"]):
                        continue
                    if "expiration_date" in q and q["expiration_date"] != expiry.isoformat():
                        continue
                    price, delta = _black_scholes(spot, strike, years, 0.2, right == "C")
                    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                    quote = {"t": stamp, "bp": round(max(price - 0.05, 0.01), 2), "ap": round(price + 0.05, 2)}
                    if symbol in self.option_quotes:
                        replaced = self.option_quotes[symbol]
                        quote = {"t": stamp, **replaced} if replaced is not None else {}
                    out[symbol] = {
                        "latestQuote": quote,
                        "latestTrade": {"t": stamp, "p": round(price, 2), "s": 1},
                        "impliedVolatility": 0.2,
                        "greeks": {"delta": round(delta, 4), "gamma": 0.05, "theta": -0.1, "vega": 0.2, "rho": 0.01},
                    }
        return web.json_response({"snapshots": out, "next_page_token": None})

    @contextmanager
    def serving(self) -> Iterator[FakeAlpaca]:
        """Serve on 127.0.0.1 (a free port, then in ``url``) from a thread; stopped on exit."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner = web.AppRunner(self.app(), access_log=None)

        async def start() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-alpaca", daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake Alpaca server did not start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


def _black_scholes(spot: float, strike: float, years: float, vol: float, call: bool) -> tuple[float, float]:
    """(price, delta) of a European option at zero rates."""
    d1 = (math.log(spot / strike) + vol * vol * years / 2) / (vol * math.sqrt(years))
    d2 = d1 - vol * math.sqrt(years)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    if call:
        return spot * cdf(d1) - strike * cdf(d2), cdf(d1)
    return strike * cdf(-d2) - spot * cdf(-d1), cdf(d1) - 1
