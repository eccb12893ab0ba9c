"""The akshare adapter's configuration, built by bot/venues.py from Settings (nothing here reads
the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Adjust = Literal["", "qfq"]


@dataclass(frozen=True, slots=True)
class AkshareConfig:
    """- ``rate_per_second``: requests per second to Eastmoney and Sina together; Eastmoney bans an IP
      that calls faster than about one per second for a while.
    - ``adjust``: A-share bar prices, ``"qfq"`` (forward-adjusted for dividends and splits: what
      indicators and signals should see) or ``""`` (unadjusted: the prices actually traded).
    - ``timeout``: seconds per HTTP request.
    - ``page_size``: rows per page of the universe listing (Eastmoney serves at most 100).
    - ``futures``: SHFE main-contract symbols served (``cu0`` copper, ``au0`` gold, ``ag0`` silver).
    - ``eastmoney_spot_url`` / ``eastmoney_quotes_url`` / ``eastmoney_kline_url`` / ``sina_futures_url``:
      the endpoints, as akshare 1.19 calls them; replaceable for a proxy.
    """

    rate_per_second: float = 1.0
    adjust: Adjust = "qfq"
    timeout: float = 15.0
    page_size: int = 100
    futures: tuple[str, ...] = ("cu0", "au0", "ag0")
    eastmoney_spot_url: str = "https://82.push2.eastmoney.com/api/qt/clist/get"
    eastmoney_quotes_url: str = "https://push2.eastmoney.com/api/qt/ulist.np/get"
    eastmoney_kline_url: str = "https://push2his.eastmoney.com/api/qt/stock/kline/get"
    sina_futures_url: str = "https://stock2.finance.sina.com.cn/futures/api/jsonp.php"

    def __post_init__(self) -> None:
        if not self.rate_per_second > 0:
            raise ValueError(f"rate_per_second must be above zero, got {self.rate_per_second}")
        if self.adjust not in ("", "qfq"):
            raise ValueError(f"adjust must be '' (unadjusted) or 'qfq' (forward-adjusted), got {self.adjust!r}")
        if not 1 <= self.page_size <= 100:
            raise ValueError(f"page_size must be 1 to 100 (Eastmoney's limit), got {self.page_size}")
