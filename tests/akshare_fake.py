"""A fake of the Eastmoney and Sina endpoints the akshare venue reads, behind `responses` (no
socket): recorded bars from tests/fixtures/akshare served in the venues' wire formats, cut at a
clock's now, with scripted faults (HTTP status with headers, timeouts) per kind of request.
Used by tests/test_venue_akshare.py and benchmarks/venues.py."""

from __future__ import annotations

import json
import math
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import requests
import responses

from venues.adapters.akshare.config import AkshareConfig
from venues.adapters.akshare.http import A_SHARES_FS, ETFS_FS
from venues.adapters.akshare.parse import SHANGHAI
from venues.clock import Clock
from venues.timeframes import resample

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "akshare"

# Rows of the listings: (code, market, name). Real securities; bars exist only for 510300 and 600519.
A_SHARES = [
    ("600519", 1, "贵州茅台"),
    ("000001", 0, "平安银行"),
    ("300750", 0, "宁德时代"),
    ("688981", 1, "中芯国际"),
    ("600200", 1, "ST江苏吴中"),
    ("430047", 0, "诺思兰德"),
]
ETFS = [("510300", 1, "沪深300ETF"), ("159915", 0, "创业板ETF")]
KLT_OF = {"5": "5m", "15": "15m", "30": "30m", "60": "1h", "101": "1d"}


def load_5m(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True)).as_unit("us").rename("ts")
    frame.index = index
    frame["close_time"] = index + pd.Timedelta(minutes=5)
    return frame.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})


def load_daily(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    days = pd.to_datetime(frame.pop("date"))
    opens = (days + pd.Timedelta(hours=9, minutes=30)).dt.tz_localize(SHANGHAI).dt.tz_convert("UTC")
    frame.index = pd.DatetimeIndex(opens).as_unit("us").rename("ts")
    frame["close_time"] = frame.index + pd.Timedelta(hours=5, minutes=30)
    return frame.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})


@dataclass
class Fault:
    status: int = 0  # 0: a timeout
    headers: dict[str, str] | None = None
    body: str = ""
    only: dict[str, str] | None = None  # the request parameters it applies to (None: any request)


class FakeAkshareApi:
    """``clock``: the venue's clock (bars opening after its now are not served). ``calls`` counts
    requests per kind: listing, quotes, kline, sina."""

    def __init__(self, clock: Clock, config: AkshareConfig) -> None:
        self.clock = clock
        self.config = config
        self.calls: dict[str, int] = defaultdict(int)
        self.params: list[dict[str, str]] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.listings = {A_SHARES_FS: list(A_SHARES), ETFS_FS: list(ETFS)}
        self.names = {f"{m}.{c}": n for c, m, n in A_SHARES + ETFS}
        etf = load_5m(FIXTURES / "510300.SH_5m_2021-10-08_2022-01-18_tdx.csv")
        self.bars: dict[tuple[str, str], pd.DataFrame] = {("1.510300", "5m"): etf}
        for tf in ("15m", "30m", "1h", "1d"):
            self.bars[("1.510300", tf)] = resample(etf, tf, calendar="XSHG")
        self.bars[("1.600519", "1d")] = load_daily(FIXTURES / "600519.SH_1d_2020-06_2022-01_baostock.csv")
        # Sina rows by (symbol, period): dicts in akshare's column order.
        self.sina: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # Raw kline rows replacing the recorded bars for one (secid, klt, fqt) (the docs' sample).
        self.raw_klines: dict[tuple[str, str, str], list[str]] = {}

    def fail(
        self,
        kind: str,
        status: int = 0,
        headers: dict[str, str] | None = None,
        *,
        times: int = 1,
        only: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests of ``kind`` (with the parameters ``only``) fail: with
        ``status`` and ``headers``, or a read timeout for status 0."""
        for _ in range(times):
            self.faults[kind].append(Fault(status, headers, only=only))

    # --- installation ---

    def install(self, mock: responses.RequestsMock) -> None:
        c = self.config
        for url, kind, handler in (
            (c.eastmoney_spot_url, "listing", self._listing),
            (c.eastmoney_quotes_url, "quotes", self._quotes),
            (c.eastmoney_kline_url, "kline", self._kline),
        ):
            mock.add_callback(responses.GET, url, callback=self._serve(kind, handler))
        mock.add_callback(
            responses.GET,
            f"{c.sina_futures_url}/var%20_V21052021_4_12=/InnerFuturesNewService.getDailyKLine",
            callback=self._serve("sina", self._sina_daily),
        )
        mock.add_callback(
            responses.GET,
            f"{c.sina_futures_url}/=/InnerFuturesNewService.getFewMinLine",
            callback=self._serve("sina", self._sina_minutes),
        )

    def _serve(self, kind: str, handler: Callable[[dict[str, str]], str]) -> Callable[[Any], Any]:
        def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            self.calls[kind] += 1
            params = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True).items()}
            self.params.append(params)
            fault = next(
                (f for f in self.faults[kind] if not f.only or f.only.items() <= params.items()),
                None,
            )
            if fault is not None:
                self.faults[kind].remove(fault)
                if fault.status == 0:
                    raise requests.exceptions.ReadTimeout(f"read timed out ({kind})")
                return fault.status, fault.headers or {}, fault.body
            return 200, {"Content-Type": "application/json"}, handler(params)

        return callback

    # --- Eastmoney ---

    def _listing(self, params: dict[str, str]) -> str:
        rows = self.listings.get(params["fs"], [])
        size, page = int(params["pz"]), int(params["pn"])
        chunk = rows[(page - 1) * size : page * size]
        diff = [self._row(f"{m}.{c}") for c, m, _ in chunk]
        return json.dumps({"rc": 0, "data": {"total": len(rows), "diff": diff} if rows else None})

    def _quotes(self, params: dict[str, str]) -> str:
        diff = [self._row(secid) for secid in params["secids"].split(",") if secid in self.names]
        return json.dumps({"rc": 0, "data": {"total": len(diff), "diff": diff}})

    def _row(self, secid: str) -> dict[str, Any]:
        market, code = secid.split(".")
        row: dict[str, Any] = {"f12": code, "f13": int(market), "f14": self.names[secid]}
        now = pd.Timestamp(self.clock.now())
        frame = self.bars.get((secid, "5m"), self.bars.get((secid, "1d")))
        final = frame[frame["close_time"] <= now] if frame is not None else None
        if final is None or final.empty:
            return row | {"f2": "-", "f3": "-", "f5": "-", "f18": "-"}
        daily = self.bars[(secid, "1d")]
        prev = daily[daily["close_time"] <= now]
        today = final.index[-1].tz_convert(SHANGHAI).date()
        prev = prev[[ts.tz_convert(SHANGHAI).date() < today for ts in prev.index]]
        prev_close = float(prev["close"].iloc[-1]) if len(prev) else math.nan
        last = float(final["close"].iloc[-1])
        session = final[[ts.tz_convert(SHANGHAI).date() == today for ts in final.index]]
        return row | {
            "f2": last,
            "f3": "-" if math.isnan(prev_close) else round((last / prev_close - 1) * 100, 2),
            "f5": float(session["volume"].sum()) / 100,
            "f18": prev_close,
            "f124": int(final["close_time"].iloc[-1].timestamp()),
        }

    def _kline(self, params: dict[str, str]) -> str:
        secid, klt, fqt = params["secid"], params["klt"], params["fqt"]
        if (secid, klt, fqt) in self.raw_klines:
            raw = self.raw_klines[(secid, klt, fqt)]
            return json.dumps({"rc": 0, "data": {"code": secid.split(".")[1], "klines": raw}})
        if secid not in self.names:
            return json.dumps({"rc": 0, "data": None})
        frame = self.bars.get((secid, KLT_OF[klt]))
        lines: list[str] = []
        if frame is not None:
            now = pd.Timestamp(self.clock.now())
            local_close = frame["close_time"].dt.tz_convert(SHANGHAI)
            day = local_close.dt.strftime("%Y%m%d")
            # Bars that have opened by now; the one still forming is served as the venue does.
            chosen = frame[(frame.index < now) & (day >= params["beg"]) & (day <= params["end"])]
            for ts, row in chosen.iterrows():
                label = ts.tz_convert(SHANGHAI).strftime("%Y-%m-%d") if klt == "101" else None
                label = label or row["close_time"].tz_convert(SHANGHAI).strftime("%Y-%m-%d %H:%M")
                lines.append(
                    f"{label},{row['open']:.3f},{row['close']:.3f},{row['high']:.3f},{row['low']:.3f},"
                    f"{row['volume'] / 100:.0f},{row['volume'] * row['close']:.2f},0.00,0.00,0.00,0.00"
                )
        return json.dumps({"rc": 0, "data": {"code": secid.split(".")[1], "klines": lines}})

    # --- Sina ---

    def _sina_rows(self, symbol: str, period: str, prefix: str) -> str:
        rows = self.sina.get((symbol, period))
        return f"{prefix}({json.dumps(rows) if rows else 'null'});"

    def _sina_daily(self, params: dict[str, str]) -> str:
        return self._sina_rows(params["symbol"], "daily", "/*<script>location.href='//sina.com';</script>*/\nvar _V=")

    def _sina_minutes(self, params: dict[str, str]) -> str:
        return self._sina_rows(params["symbol"], params["type"], "=")


def minute_rows(start: datetime, count: int, price: float, step: float = 1.0) -> list[dict[str, Any]]:
    """Sina minute rows (end-labelled, Asia/Shanghai) from ``start`` (the first bar's end), one a
    minute, the close moving by ``step`` each bar."""
    rows = []
    for i in range(count):
        end = start + timedelta(minutes=i)
        close = price + i * step
        rows.append(
            {
                "d": end.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
                "o": str(close - step),
                "h": str(close + step),
                "l": str(close - 2 * step),
                "c": str(close),
                "v": "12",
                "p": "200000",
            }
        )
    return rows
