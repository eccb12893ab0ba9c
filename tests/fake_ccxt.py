"""A local fake of the OKX and Binance REST APIs, for the ccxt adapter's tests and benchmark.

It serves, on 127.0.0.1 in a thread of its own (so both async tests and the synchronous CLI can use
it), the routes ccxt calls for markets, tickers, candles, funding rates, balances and orders. The
recorded ccxt payloads (tests/fixtures/ccxt, see PROVENANCE.md) are served as recorded or used as
templates; market lists, funding rates and long candle histories are built in the exchanges'
documented shapes around them. Faults are injected per route: a status (429 with Retry-After, 503,
401) some number of times, or a slow answer.

On the real clock (``now=None``) with an ``anchor``, the fake serves, at each real moment, the series
(recorded rows included) it serves at the same distance past ``anchor``: the hour it started in is
``anchor``'s hour, so a live test sees the same market whenever it runs, on bars that close as real
time passes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from venues.clock import RealClock

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
_TF_MS = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "1H": 60, "4h": 240, "4H": 240, "1d": 1440, "1Dutc": 1440}
_TF_MS = {k: v * MINUTE_MS for k, v in _TF_MS.items()}
VALID_KEY = "test-key"

# base asset -> (price level, spot amount step/min, spot tick, okx swap contract value)
ASSETS: dict[str, tuple[float, str, str, str]] = {
    "BTC": (43400.0, "0.00001", "0.1", "0.01"),
    "ETH": (2300.0, "0.0001", "0.01", "0.1"),
    "SOL": (100.0, "0.001", "0.001", "1"),
    "LTC": (70.0, "0.001", "0.01", "1"),
}
SWAPS = ("BTC", "ETH")
# OKX's BTC-USDT spot trades in lots (lotSz) finer than its minimum order size (minSz), as the real
# instrument does; the other names' lot is their minimum.
OKX_SPOT_LOT = {"BTC": "0.00000001"}


def recorded(exchange: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"ccxt_{exchange}_static_responses.json").read_text())


def _entry(data: dict[str, Any], method: str, index: int = 0) -> Any:
    return copy.deepcopy(data["methods"][method][index]["httpResponse"])


@dataclass
class Fault:
    path: str  # a substring of the request path
    status: int = 0  # 0: answer normally (after `delay`)
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0
    after_handling: bool = False  # the request takes effect first, then the delay and the fault (a lost reply)
    method: str | None = None
    query: str | None = None  # a substring of the query string (one symbol of several)


@dataclass
class FakeExchange:
    """``exchange``: "okx" or "binance". ``now``: the fake's present (the newest bar is the one still
    forming at ``now``). ``gaps``: {(exchange symbol id, timeframe): [(from ms, to ms)]} without bars.
    ``history_page``: most bars OKX's history-candles answers (100, as the real one). ``anchor`` (with
    ``now=None`` only; a whole UTC hour): the series moment served at the start of the real hour the
    fake starts in."""

    exchange: str
    now: datetime | None  # None: the real time, for the CLI on the real clock
    listed: datetime = datetime(2023, 1, 1, tzinfo=UTC)
    gaps: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    history_page: int = 100
    funding_rate: str = "0.00030000"
    has_funding: bool = True
    unquoted: set[str] = field(default_factory=set)  # base assets the tickers answers leave out
    recorded_ticker: bool = False  # serve the recorded BTC/USDT ticker as recorded (else priced from the series)
    faults: list[Fault] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    order_posts: int = 0
    simulated_trading: list[str | None] = field(default_factory=list)  # OKX's demo header on each POST
    url: str = ""
    extra_coins: int = 0  # synthetic spot markets C001, C002, ... beside the four real names (benchmarks)
    # OKX only: BTC and ETH spot markets quoted in these USD stablecoins too (BTC-USDC), priced as
    # the USDT pair; a paper account holds cash per quote currency.
    stable_quotes: tuple[str, ...] = ()
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        # Series time = real time + shift: whole hours, so bars up to 1h are the anchor's own bars.
        self.shift_ms = 0
        if self.anchor is not None:
            if self.now is not None:
                raise ValueError("an anchor moves the series along the real clock: give now=None with it")
            anchor_ms = int(self.anchor.timestamp() * 1000)
            if anchor_ms % HOUR_MS:
                raise ValueError(f"the anchor must be a whole UTC hour, not {self.anchor.isoformat()}")
            self.shift_ms = anchor_ms - self.now_ms // HOUR_MS * HOUR_MS
        self.assets = dict(ASSETS)
        for n in range(1, self.extra_coins + 1):
            self.assets[f"C{n:03d}"] = (1.0 + n * 0.37, "0.01", "0.0001", "1")
        if self.exchange not in ("okx", "binance"):
            raise ValueError(f"the fake serves okx and binance, not {self.exchange!r}")
        self.data = recorded(self.exchange)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---

    def __enter__(self) -> FakeExchange:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)  # the tests count requests themselves
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name=f"fake-{self.exchange}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake exchange did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def fail(self, path: str, status: int = 0, **kwargs: Any) -> Fault:
        fault = Fault(path, status, **kwargs)
        self.faults.append(fault)
        return fault

    def count(self, path_part: str) -> int:
        return sum(n for path, n in self.requests.items() if path_part in path)

    @property
    def now_ms(self) -> int:
        moment = self.now if self.now is not None else RealClock().now()
        return int(moment.timestamp() * 1000)

    # --- the series ---

    def price(self, base: str, ms: int) -> float:
        """The series' price of ``base`` at real time ``ms``."""
        level = self.assets[base][0]
        m = (ms + self.shift_ms) / MINUTE_MS
        return round(level * (1 + 0.03 * math.sin(m / 997) + 0.01 * math.sin(m / 61) + 0.00002 * (m % 13)), 2)

    def candles(self, base: str, inst: str, tf: str, lo: int | None, hi: int | None, limit: int) -> list[list[Any]]:
        """The bars of ``inst`` opening in ``[lo, hi]`` (ascending; ms), between listing and the bar
        forming at ``now``, as [ms, open, high, low, close, volume]; only about ``limit`` bars past
        the bound given are made. The recorded rows replace generated ones at their times."""
        step = _TF_MS[tf]
        first = -(-int(self.listed.timestamp() * 1000) // step) * step
        last = (self.now_ms // step) * step
        extra = (limit + 500) * step  # room for the holes of the gap tests
        top = min(last, hi) if hi is not None else last
        bottom = max(first, lo) if lo is not None else max(first, top - extra)
        top = min(top, bottom + extra)
        holes = self.gaps.get((inst, tf), [])
        overlay = self._recorded_rows(inst, tf)
        rows = []
        for ms in range(-(-bottom // step) * step, top + 1, step):
            if any(lo <= ms < hi for lo, hi in holes):
                continue
            if ms + self.shift_ms in overlay:
                rows.append([ms, *overlay[ms + self.shift_ms][1:]])
                continue
            end = min(ms + step, self.now_ms)
            o, c = self.price(base, ms), self.price(base, end)
            rows.append([ms, o, round(max(o, c) * 1.001, 2), round(min(o, c) * 0.999, 2), c, 10.0 + (ms // step) % 7])
        return rows

    def _recorded_rows(self, inst: str, tf: str) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = {}
        for entry in self.data["methods"]["fetchOHLCV"]:
            symbol, timeframe = entry["input"][0], entry["input"][1]
            if timeframe != tf.lower().replace("dutc", "d") or self._inst(symbol) != inst:
                continue
            rows = entry["httpResponse"]["data"] if self.exchange == "okx" else entry["httpResponse"]
            for row in rows:
                out[int(row[0])] = [int(row[0]), *(float(x) for x in row[1:6])]
        return out

    def _inst(self, symbol: str) -> str:
        base, rest = symbol.split("/")
        quote, _, settle = rest.partition(":")
        if self.exchange == "okx":
            return f"{base}-{quote}-SWAP" if settle else f"{base}-{quote}"
        return f"{base}{quote}" if quote == "USDT" else f"{base}{quote}_PERP"

    # --- HTTP ---

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests[f"{request.method} {path}"] += 1
        if request.method == "POST":
            self.simulated_trading.append(request.headers.get("x-simulated-trading"))
        fault = next(
            (
                f
                for f in self.faults
                if f.times > 0
                and f.path in path
                and f.method in (None, request.method)
                and (f.query is None or f.query in request.query_string)
            ),
            None,
        )
        if fault is not None:
            fault.times -= 1
            if fault.delay and not fault.after_handling:
                await asyncio.sleep(fault.delay)
            if fault.status and not fault.after_handling:
                return self._error(fault)
        query = dict(request.query)
        body = await request.text()
        if body:
            if request.content_type == "application/json":
                decoded = json.loads(body)
                query.update(decoded if isinstance(decoded, dict) else {"batch": decoded})
            else:
                query.update(dict(urllib.parse.parse_qsl(body)))
        key = request.headers.get("OK-ACCESS-KEY") or request.headers.get("X-MBX-APIKEY")
        if key is not None and key != VALID_KEY:
            return self._auth_error()
        routes = self.OKX_ROUTES if self.exchange == "okx" else self.BINANCE_ROUTES
        name = routes.get(path.rstrip("/"))
        if name is None:
            return web.json_response({"code": "404", "msg": f"the fake does not serve {path}"}, status=404)
        status, payload = getattr(self, name)(request.method, query)
        if fault is not None and fault.after_handling:  # taken effect; the answer is late or an error
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                return self._error(fault)
        return web.json_response(payload, status=status)

    def _error(self, fault: Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.status == 429:
            body = (
                {"code": "50011", "msg": "Too Many Requests", "data": []}
                if self.exchange == "okx"
                else {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE."}
            )
            return web.json_response(body, status=429, headers=headers)
        if fault.status == 401:
            return self._auth_error()
        if fault.status == 400:  # the exchange does not know the instrument (any more)
            body = (
                {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
                if self.exchange == "okx"
                else {"code": -1121, "msg": "Invalid symbol."}
            )
            return web.json_response(body, status=400, headers=headers)
        return web.Response(status=fault.status, text="Service Temporarily Unavailable", headers=headers)

    def _auth_error(self) -> web.Response:
        if self.exchange == "okx":
            return web.json_response({"code": "50111", "msg": "Invalid OK-ACCESS-KEY", "data": []}, status=401)
        return web.json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, status=401)

    # --- OKX routes ---

    def _okx_instruments(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        kind = q.get("instType", "SPOT")
        data = []
        for base, (_, amount, tick, ct_val) in self.assets.items():
            common = {"alias": "", "baseCcy": "", "category": "1", "ctMult": "", "ctType": "", "ctVal": "",
                      "ctValCcy": "", "expTime": "", "instFamily": "", "lever": "", "listTime": "1548133413000",
                      "optType": "", "quoteCcy": "", "settleCcy": "", "state": "live", "stk": "", "uly": "",
                      "maxLmtSz": "10000", "maxMktSz": "1000000", "ruleType": "normal"}  # fmt: skip
            if kind == "SPOT":
                for quote in ("USDT", *(self.stable_quotes if base in SWAPS else ())):
                    data.append(common | {"instType": "SPOT", "instId": f"{base}-{quote}", "baseCcy": base,
                                          "quoteCcy": quote, "lotSz": OKX_SPOT_LOT.get(base, amount),
                                          "minSz": amount, "tickSz": tick, "lever": "10"})  # fmt: skip
            elif kind == "SWAP" and base in SWAPS:
                data.append(common | {"instType": "SWAP", "instId": f"{base}-USDT-SWAP", "ctType": "linear",
                                      "ctVal": ct_val, "ctMult": "1", "ctValCcy": base, "settleCcy": "USDT",
                                      "instFamily": f"{base}-USDT", "uly": f"{base}-USDT", "lotSz": "0.01",
                                      "minSz": "0.01", "tickSz": tick, "lever": "100"})  # fmt: skip
        return 200, {"code": "0", "data": data, "msg": ""}

    def _day_prices(self, base: str) -> dict[str, float]:
        """The series' last price at ``now`` and its 24-hour open, high and low."""
        day = 24 * 60 * MINUTE_MS
        samples = [self.price(base, self.now_ms - day + k * 60 * MINUTE_MS) for k in range(25)]
        last = self.price(base, self.now_ms)
        return {"last": last, "open": samples[0], "high": max(*samples, last), "low": min(*samples, last)}

    def _okx_ticker_row(self, inst: str) -> dict[str, Any]:
        row = _entry(self.data, "fetchTicker")["data"][0]
        if inst == "BTC-USDT" and self.recorded_ticker:
            return row
        p = self._day_prices(inst.split("-")[0])
        row.update({"instId": inst, "instType": "SWAP" if inst.endswith("SWAP") else "SPOT", "ts": str(self.now_ms),
                    "last": str(p["last"]), "askPx": str(p["last"]), "bidPx": str(round(p["last"] - 0.1, 2)),
                    "open24h": str(p["open"]), "high24h": str(p["high"]), "low24h": str(p["low"]),
                    "sodUtc0": str(p["open"]), "sodUtc8": str(p["open"])})  # fmt: skip
        return row

    def _okx_tickers(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        kind = q.get("instType", "SPOT")
        insts = [f"{b}-USDT" for b in self.assets] if kind == "SPOT" else [f"{b}-USDT-SWAP" for b in SWAPS]
        if kind == "SPOT":
            insts += [f"{b}-{q}" for b in SWAPS for q in self.stable_quotes]
        rows = [self._okx_ticker_row(i) for i in insts if i.split("-")[0] not in self.unquoted]
        return 200, {"code": "0", "msg": "", "data": rows}

    def _okx_ticker(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return 200, {"code": "0", "msg": "", "data": [self._okx_ticker_row(q["instId"])]}

    def _okx_recent_candles(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._okx_candles(q, history=False)

    def _okx_history_candles(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._okx_candles(q, history=True)

    def _okx_candles(self, q: dict[str, str], *, history: bool) -> tuple[int, Any]:
        inst, bar = q["instId"], q.get("bar", "1m")
        cap = self.history_page if history else 300
        limit = min(int(q.get("limit", 100)), cap)
        hi = int(q["after"]) - 1 if "after" in q else None
        lo = int(q["before"]) + 1 if "before" in q else None
        if lo is not None and hi is not None:  # the newest bars of the window: only those are made
            lo = max(lo, hi - (limit + 500) * _TF_MS[bar])
        rows = self.candles(inst.split("-")[0], inst, bar, lo, hi, limit)
        if lo is None:
            rows = rows[-(limit + 500) :]
        page = list(reversed(rows))[:limit]  # newest first, as OKX answers
        step = _TF_MS[bar]
        data = [
            [str(r[0]), *(str(x) for x in r[1:6]), "0", "0", "1" if r[0] + step <= self.now_ms else "0"] for r in page
        ]
        return 200, {"code": "0", "msg": "", "data": data}

    def _okx_funding(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        if not self.has_funding:
            return 200, {"code": "0", "msg": "", "data": []}
        eight_h = 8 * 3600 * 1000
        nxt = (self.now_ms // eight_h + 1) * eight_h
        row = {"fundingRate": self.funding_rate, "fundingTime": str(nxt), "instId": q["instId"], "instType": "SWAP",
               "method": "current_period", "formulaType": "withRate", "maxFundingRate": "0.0075",
               "minFundingRate": "-0.0075", "nextFundingRate": "", "nextFundingTime": str(nxt + eight_h),
               "premium": "0.0001", "settFundingRate": "0.0001", "settState": "settled", "interestRate": "0.0001",
               "impactValue": "", "ts": str(self.now_ms)}  # fmt: skip
        return 200, {"code": "0", "msg": "", "data": [row]}

    def _okx_balance(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        detail = {"availBal": "5000", "availEq": "5000", "cashBal": "5000", "ccy": "USDT", "eq": "5000",
                  "frozenBal": "0", "ordFrozen": "0", "uTime": str(self.now_ms)}  # fmt: skip
        return 200, {
            "code": "0",
            "msg": "",
            "data": [{"details": [detail], "totalEq": "5000", "uTime": str(self.now_ms)}],
        }

    def _okx_batch_orders(self, method: str, q: dict[str, Any]) -> tuple[int, Any]:
        """ccxt places one OKX order through batch-orders (a list of one)."""
        replies = [self._okx_order("POST", order)[1]["data"][0] for order in q["batch"]]
        return 200, {"code": "0", "msg": "", "data": replies}

    def _okx_cancel(self, method: str, q: dict[str, Any]) -> tuple[int, Any]:
        placed = next((o for o in self.orders.values() if o["ordId"] == q.get("ordId")), None)
        if placed is None:
            return 200, {"code": "1", "msg": "", "data": [{"sCode": "51400", "sMsg": "Cancellation failed"}]}
        placed["state"] = "canceled"
        row = {"clOrdId": placed["clOrdId"], "ordId": placed["ordId"], "sCode": "0", "sMsg": "", "ts": str(self.now_ms)}
        return 200, {"code": "0", "msg": "", "data": [row]}

    def _okx_order(self, method: str, q: dict[str, Any]) -> tuple[int, Any]:
        if method == "POST":
            self.order_posts += 1
            client_id = q["clOrdId"]
            if client_id not in self.orders:
                self.orders[client_id] = q | {"ordId": str(2896576259728695296 + len(self.orders))}
            reply = _entry(self.data, "createOrder")
            reply["data"][0].update({"clOrdId": client_id, "ordId": self.orders[client_id]["ordId"], "tag": ""})
            return 200, reply
        placed = self.orders.get(q.get("clOrdId", "")) or next(
            (o for o in self.orders.values() if o["ordId"] == q.get("ordId")), None
        )
        if placed is None:
            return 200, {"code": "51603", "msg": "Order does not exist", "data": []}
        row = _entry(self.data, "fetchOrder")["data"][0]
        inst = placed["instId"]
        fill = self.price(inst.split("-")[0], self.now_ms)
        row.update({"instId": inst, "instType": "SWAP" if inst.endswith("SWAP") else "SPOT",
                    "clOrdId": placed["clOrdId"], "ordId": placed["ordId"], "side": placed["side"],
                    "ordType": placed["ordType"], "sz": placed["sz"], "accFillSz": placed["sz"],
                    "fillSz": placed["sz"], "avgPx": str(fill), "fillPx": str(fill), "tag": "",
                    "tdMode": placed.get("tdMode", "cash"), "feeCcy": "USDT", "fee": "-0.01",
                    "state": placed.get("state", "filled")})  # fmt: skip
        return 200, {"code": "0", "msg": "", "data": [row]}

    OKX_ROUTES: ClassVar[dict[str, str]] = {
        "/api/v5/public/instruments": "_okx_instruments",
        "/api/v5/market/tickers": "_okx_tickers",
        "/api/v5/market/ticker": "_okx_ticker",
        "/api/v5/market/candles": "_okx_recent_candles",
        "/api/v5/market/history-candles": "_okx_history_candles",
        "/api/v5/public/funding-rate": "_okx_funding",
        "/api/v5/account/balance": "_okx_balance",
        "/api/v5/trade/order": "_okx_order",
        "/api/v5/trade/batch-orders": "_okx_batch_orders",
        "/api/v5/trade/cancel-order": "_okx_cancel",
    }

    # --- Binance routes ---

    def _binance_spot_info(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        symbols = []
        for base, (_, amount, tick, _) in self.assets.items():
            symbols.append({
                "symbol": f"{base}USDT", "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
                "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                "TAKE_PROFIT_LIMIT"], "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
                "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": amount, "maxQty": "9000.00000000", "stepSize": amount},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })  # fmt: skip
        return 200, {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [], "exchangeFilters": [],
                     "symbols": symbols}  # fmt: skip

    def _binance_fapi_info(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        symbols = []
        for base in SWAPS:
            tick = self.assets[base][2]
            symbols.append({
                "symbol": f"{base}USDT", "pair": f"{base}USDT", "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": base,
                "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
                "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            })  # fmt: skip
        return 200, {"timezone": "UTC", "serverTime": self.now_ms, "futuresType": "U_MARGINED", "rateLimits": [],
                     "exchangeFilters": [], "assets": [], "symbols": symbols}  # fmt: skip

    def _binance_ticker_row(self, symbol: str, futures: bool = False) -> dict[str, Any]:
        row = _entry(self.data, "fetchTicker")
        if not (symbol == "BTCUSDT" and self.recorded_ticker):
            p = self._day_prices(symbol.removesuffix("USDT"))
            row.update({"symbol": symbol, "lastPrice": f"{p['last']:.8f}", "bidPrice": f"{p['last'] - 0.01:.8f}",
                        "askPrice": f"{p['last']:.8f}", "openPrice": f"{p['open']:.8f}",
                        "prevClosePrice": f"{p['open']:.8f}", "highPrice": f"{p['high']:.8f}",
                        "lowPrice": f"{p['low']:.8f}", "priceChange": f"{p['last'] - p['open']:.8f}",
                        "priceChangePercent": f"{(p['last'] / p['open'] - 1) * 100:.3f}",
                        "weightedAvgPrice": f"{p['last']:.8f}", "closeTime": str(self.now_ms),
                        "openTime": str(self.now_ms - 24 * 60 * MINUTE_MS)})  # fmt: skip
        if futures:  # the USD-M futures 24hr ticker has no book fields (ccxt tells them apart by bidQty)
            for name in ("prevClosePrice", "bidPrice", "bidQty", "askPrice", "askQty"):
                row.pop(name)
        return row

    def _binance_spot_tickers(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._binance_tickers(q, futures=False)

    def _binance_futures_tickers(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._binance_tickers(q, futures=True)

    def _binance_tickers(self, q: dict[str, str], *, futures: bool) -> tuple[int, Any]:
        if "symbol" in q:
            return 200, self._binance_ticker_row(q["symbol"], futures)
        wanted = (
            json.loads(q["symbols"]) if "symbols" in q else [f"{b}USDT" for b in (SWAPS if futures else self.assets)]
        )
        return 200, [
            self._binance_ticker_row(s, futures) for s in wanted if s.removesuffix("USDT") not in self.unquoted
        ]

    def _binance_spot_klines(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._binance_klines(q, futures=False)

    def _binance_futures_klines(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return self._binance_klines(q, futures=True)

    def _binance_klines(self, q: dict[str, str], *, futures: bool) -> tuple[int, Any]:
        symbol, interval = q["symbol"], q.get("interval", "1m")
        limit = min(int(q.get("limit", 500)), 1500 if futures else 1000)
        lo = int(q["startTime"]) if "startTime" in q else None
        hi = int(q["endTime"]) if "endTime" in q else None
        rows = self.candles(symbol.removesuffix("USDT"), symbol, interval, lo, hi, limit)
        page = rows[:limit] if lo is not None else rows[-limit:]
        step = _TF_MS[interval]
        return 200, [[r[0], *(f"{x:.8f}" for x in r[1:6]), r[0] + step - 1, "0", 1, "0", "0", "0"] for r in page]

    def _binance_premium(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        eight_h = 8 * 3600 * 1000
        symbol = q.get("symbol", "BTCUSDT")
        price = self.price(symbol.removesuffix("USDT"), self.now_ms)
        rate = self.funding_rate if self.has_funding else ""
        return 200, {"symbol": symbol, "markPrice": f"{price:.8f}", "indexPrice": f"{price:.8f}",
                     "estimatedSettlePrice": f"{price:.8f}", "lastFundingRate": rate, "interestRate": "0.00010000",
                     "nextFundingTime": (self.now_ms // eight_h + 1) * eight_h, "time": self.now_ms}  # fmt: skip

    def _binance_funding_info(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return 200, [{"symbol": f"{b}USDT", "adjustedFundingRateCap": "0.02", "adjustedFundingRateFloor": "-0.02",
                      "fundingIntervalHours": 8, "disclaimer": False} for b in SWAPS]  # fmt: skip

    def _binance_account(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        return 200, _entry(self.data, "fetchBalance", 0)

    def _binance_order(self, method: str, q: dict[str, str]) -> tuple[int, Any]:
        if method == "POST":
            self.order_posts += 1
            client_id = q["newClientOrderId"]
            if client_id not in self.orders:
                self.orders[client_id] = q | {"orderId": str(9780331417 + len(self.orders))}
            new = self.orders[client_id]
            reply = _entry(self.data, "createOrder")
            reply.update({"symbol": new["symbol"], "orderId": new["orderId"], "clientOrderId": client_id,
                          "type": new["type"], "side": new["side"], "origQty": new["quantity"],
                          "price": new.get("price", "0.00000000"), "icebergQty": "0.00000000",
                          "transactTime": str(self.now_ms)})  # fmt: skip
            return 200, reply
        placed: dict[str, Any] | None = self.orders.get(q.get("origClientOrderId", "")) or next(
            (o for o in self.orders.values() if o["orderId"] == q.get("orderId")), None
        )
        if placed is None:
            return 400, {"code": -2013, "msg": "Order does not exist."}
        if method == "DELETE":
            placed["status"] = "CANCELED"
        row = _entry(self.data, "fetchOrder")
        price = self.price(placed["symbol"].removesuffix("USDT"), self.now_ms)
        qty = float(placed["quantity"])
        row.update({"symbol": placed["symbol"], "orderId": placed["orderId"],
                    "clientOrderId": placed["newClientOrderId"], "side": placed["side"], "type": placed["type"],
                    "origQty": placed["quantity"], "executedQty": placed["quantity"],
                    "cummulativeQuoteQty": f"{qty * price:.8f}", "time": str(self.now_ms),
                    "updateTime": str(self.now_ms), "workingTime": str(self.now_ms),
                    "status": placed.get("status", "FILLED")})  # fmt: skip
        return 200, row

    BINANCE_ROUTES: ClassVar[dict[str, str]] = {
        "/api/v3/exchangeInfo": "_binance_spot_info",
        "/fapi/v1/exchangeInfo": "_binance_fapi_info",
        "/api/v3/ticker/24hr": "_binance_spot_tickers",
        "/fapi/v1/ticker/24hr": "_binance_futures_tickers",
        "/api/v3/klines": "_binance_spot_klines",
        "/fapi/v1/klines": "_binance_futures_klines",
        "/fapi/v1/premiumIndex": "_binance_premium",
        "/fapi/v1/fundingInfo": "_binance_funding_info",
        "/api/v3/account": "_binance_account",
        "/api/v3/order": "_binance_order",
    }
