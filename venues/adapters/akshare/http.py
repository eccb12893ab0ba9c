"""The HTTP requests of the akshare venue, one request per method (synchronous: run them in a
thread). They are the requests akshare 1.19 makes (akshare/stock_feature/stock_hist_em.py:
stock_zh_a_spot_em, stock_zh_a_hist, stock_zh_a_hist_min_em; akshare/futures/futures_zh_sina.py:
futures_zh_daily_sina, futures_zh_minute_sina; akshare/stock/stock_hot_rank_em.py for the batched
``ulist.np`` quotes) with the same URLs and parameters, sent here rather than through those
functions because the functions hide what the venue answered: they drop the HTTP status (a 429 or
a 5xx becomes a JSON decode error without its Retry-After), retry and sleep on their own
(request_with_retry: up to three tries and ~5 s asleep), and page the universe listing with their
own random sleeps, all outside the venue's pacing and request count. Parsing stays in parse.py.
The trade calendar does go through akshare (tool_trade_date_hist_sina): its answer is encoded and
akshare owns the decoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from venues.adapters.akshare.config import AkshareConfig

# The tokens and field lists akshare sends (Eastmoney answers without them too, but differently).
_SPOT_UT = "bd1d9ddb04089700cf9c27f6f7426281"
_KLINE_UT = "7eea3edcaed734bea9cbfc24409ed989"
A_SHARES_FS = "m:0 t:6,m:0 t:80,m:1 t:2,m:1 t:23,m:0 t:81 s:2048"  # stock_zh_a_spot_em
ETFS_FS = "b:MK0021,b:MK0022,b:MK0023,b:MK0024,b:MK0827"  # fund_etf_spot_em
LISTING_FIELDS = "f2,f3,f5,f12,f13,f14,f18"
QUOTE_FIELDS = "f2,f3,f5,f12,f13,f14,f18,f124"
_KLINE_FIELDS2 = "f51,f52,f53,f54,f55,f56,f57,f58,f59,f60,f61"
ADJUST_CODE = {"": "0", "qfq": "1"}


class NoData(Exception):
    """The venue answered, with nothing for this security (an unknown or delisted code)."""


class BadAnswer(Exception):
    """The venue answered 200 with a body that is not what the endpoint serves (an anti-crawler
    page, a truncated body); worth one more try."""


class AkshareHttp:
    def __init__(self, config: AkshareConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self.session = session or requests.Session()
        # Eastmoney refuses requests without a browser-like user agent now and then.
        self.session.headers.setdefault("User-Agent", "Mozilla/5.0 (tradeops; +paper trading)")

    def close(self) -> None:
        self.session.close()

    def _get(self, url: str, params: dict[str, str]) -> requests.Response:
        response = self.session.get(url, params=params, timeout=self.config.timeout)
        response.raise_for_status()  # 429 and 5xx are transient, other 4xx permanent (venue.py)
        return response

    def _json(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        response = self._get(url, params)
        try:
            body = response.json()
        except ValueError as exc:
            raise BadAnswer(f"{url} answered something that is not JSON: {response.text[:80]!r}") from exc
        if not isinstance(body, dict):
            raise BadAnswer(f"{url} answered {type(body).__name__} where an object was expected")
        return body

    def listing_page(self, fs: str, page: int) -> tuple[list[dict[str, Any]], int]:
        """One page of a board listing (stock_zh_a_spot_em's request): (rows, total rows)."""
        params = {
            "pn": str(page),
            "pz": str(self.config.page_size),
            "po": "1",
            "np": "1",
            "ut": _SPOT_UT,
            "fltt": "2",
            "invt": "2",
            "fid": "f12",
            "fs": fs,
            "fields": LISTING_FIELDS,
        }
        body = self._json(self.config.eastmoney_spot_url, params)
        data = body.get("data")
        if not data:
            return [], 0
        rows = data.get("diff") or []
        if isinstance(rows, dict):  # np=0 gives an object keyed by position
            rows = list(rows.values())
        return list(rows), int(data.get("total") or 0)

    def quotes(self, secids: Sequence[str]) -> list[dict[str, Any]]:
        """Latest quotes of many securities in one request (Eastmoney's ulist.np)."""
        params = {"fltt": "2", "invt": "2", "fields": QUOTE_FIELDS, "secids": ",".join(secids)}
        data = self._json(self.config.eastmoney_quotes_url, params).get("data")
        rows = (data or {}).get("diff") or []
        return list(rows.values()) if isinstance(rows, dict) else list(rows)

    def klines(self, secid: str, klt: str, adjust: str, beg: str, end: str) -> list[str]:
        """Bars of one security (stock_zh_a_hist / stock_zh_a_hist_min_em's request): the
        comma-separated rows; ``beg``/``end`` are exchange-local dates YYYYMMDD. NoData when the
        venue has no such security."""
        params = {
            "fields1": "f1,f2,f3,f4,f5,f6",
            "fields2": _KLINE_FIELDS2,
            "ut": _KLINE_UT,
            "klt": klt,
            "fqt": ADJUST_CODE[adjust],
            "secid": secid,
            "beg": beg,
            "end": end,
        }
        data = self._json(self.config.eastmoney_kline_url, params).get("data")
        if not data:
            raise NoData(secid)
        return list(data.get("klines") or [])

    def _sina(self, path: str, params: dict[str, str]) -> list[list[Any]]:
        response = self._get(f"{self.config.sina_futures_url}/{path}", params)
        text = response.text
        start, stop = text.find("=("), text.rfind(")")
        if start < 0 or stop < start:
            raise BadAnswer(f"Sina answered something that is not JSONP: {text[:80]!r}")
        try:
            rows = json.loads(text[start + 2 : stop])
        except ValueError as exc:
            raise BadAnswer(f"Sina answered JSONP that does not parse: {text[:80]!r}") from exc
        if not rows:
            raise NoData(params.get("symbol", ""))
        # Rows are objects whose values come in the order akshare names them; keep the order.
        return [list(row.values()) if isinstance(row, dict) else list(row) for row in rows]

    def futures_daily(self, symbol: str) -> list[list[Any]]:
        """futures_zh_daily_sina's request: [date, open, high, low, close, volume, hold, settle]."""
        return self._sina(
            "var%20_V21052021_4_12=/InnerFuturesNewService.getDailyKLine", {"symbol": symbol, "type": "2021_04_12"}
        )

    def futures_minutes(self, symbol: str, period: str) -> list[list[Any]]:
        """futures_zh_minute_sina's request (the latest ~1000 bars only):
        [datetime, open, high, low, close, volume, hold]."""
        return self._sina("=/InnerFuturesNewService.getFewMinLine", {"symbol": symbol, "type": period})
