"""Regulatory rates with the dates they took effect: one table, a source for every row.

A fill pays the rate in force on its trade date (exchange-local day), never today's: the stamp duty
on a 2021 A-share sell is 0.1%, whatever it is now. The broker's own commission is not here; it is
the instrument's (``venues.models`` fee schedules), because it is the broker's price, not the law.

Rates (all Decimal):
  cn_stamp_duty     share of a sell's value (A-shares; sells only since 2008-09-19; ETFs exempt)
  cn_transfer_fee   share of value, both sides (过户费, CSDC, Shanghai and Shenzhen A-shares)
  us_sec_fee        USD per USD of sell proceeds (SEC Section 31; fee rate advisories)
  us_taf_per_share  USD per share sold (FINRA Trading Activity Fee, covered equity securities)
  us_taf_max        USD per trade: the TAF's cap

Sources marked "(not checked here)" are what the row was taken from but could not be re-read when
the table was written; the others were checked against the public text cited. Before a rate's
first row there is no rate here, and asking for one is an error: the Shanghai transfer fee before
2015-08-01 was charged on par value (0.3 per mille of face value), which no rate of value
expresses, and Shenzhen charged 0.0255 per mille of value; neither is modelled.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum


class RateName(StrEnum):
    CN_STAMP_DUTY = "cn_stamp_duty"
    CN_TRANSFER_FEE = "cn_transfer_fee"
    US_SEC_FEE = "us_sec_fee"
    US_TAF_PER_SHARE = "us_taf_per_share"
    US_TAF_MAX = "us_taf_max"


@dataclass(frozen=True, slots=True)
class DatedRate:
    name: RateName
    effective_from: date  # first trade date the rate applies to
    value: Decimal
    source: str


def _row(name: RateName, effective_from: str, value: str, source: str) -> DatedRate:
    return DatedRate(name, date.fromisoformat(effective_from), Decimal(value), source)


_SEC_PER_MILLION = "USD {} per million of covered sales"
R = RateName

REGULATORY_RATES: tuple[DatedRate, ...] = (
    # --- China A-shares ---
    _row(
        R.CN_STAMP_DUTY,
        "2008-09-19",
        "0.001",
        "Ministry of Finance / State Taxation Administration, 2008-09-18: 0.1% on the seller only "
        "(not checked here; the 0.1% level until 2023-08-27 is confirmed by the 2023 cut's reports)",
    ),
    _row(
        R.CN_STAMP_DUTY,
        "2023-08-28",
        "0.0005",
        "MoF / SAT announcement 2023 No. 39 (财政部 税务总局公告2023年第39号): halved to 0.05% from "
        "2023-08-28 (Xinhua, 2023-08-27)",
    ),
    _row(
        R.CN_TRANSFER_FEE,
        "2015-08-01",
        "0.00002",
        "CSDC (中国结算) notice of 2015-07: Shanghai (0.3 per mille of par) and Shenzhen (0.0255 per "
        "mille of value) unified to 0.02 per mille of value, both sides, from 2015-08-01",
    ),
    _row(
        R.CN_TRANSFER_FEE,
        "2022-04-29",
        "0.00001",
        "CSDC announcement of 2022-04-28: A-share transfer fee halved from 0.02 to 0.01 per mille of "
        "value, both sides, from 2022-04-29 (Xinhua, 2022-04-28)",
    ),
    # --- US: SEC Section 31 (per dollar of sell proceeds) ---
    _row(
        R.US_SEC_FEE,
        "2018-05-22",
        "0.0000130",
        "FINRA Information Notice 2018-05-07: " + _SEC_PER_MILLION.format("13.00") + " from 2018-05-22",
    ),
    _row(
        R.US_SEC_FEE,
        "2019-04-16",
        "0.0000207",
        "SEC Fee Rate Advisory #2 for FY2019 (Release 34-85287); FINRA notice: "
        + _SEC_PER_MILLION.format("20.70")
        + " from 2019-04-16",
    ),
    _row(
        R.US_SEC_FEE,
        "2020-02-18",
        "0.0000221",
        "SEC Fee Rate Advisory #2 for FY2020; FINRA Information Notice 2020-02-03: "
        + _SEC_PER_MILLION.format("22.10")
        + " from 2020-02-18",
    ),
    _row(
        R.US_SEC_FEE,
        "2021-02-25",
        "0.0000051",
        "SEC Fee Rate Advisory #2 for FY2021 (2021-01-15): " + _SEC_PER_MILLION.format("5.10") + " from 2021-02-25",
    ),
    _row(
        R.US_SEC_FEE,
        "2022-05-14",
        "0.0000229",
        "SEC Fee Rate Advisory #2 for FY2022: "
        + _SEC_PER_MILLION.format("22.90")
        + ", 60 days after the 2022-03-15 appropriation (not checked here)",
    ),
    _row(
        R.US_SEC_FEE,
        "2023-02-27",
        "0.0000080",
        "SEC Order Making FY2023 Annual Adjustments to Transaction Fee Rates (Release 34-96724): "
        + _SEC_PER_MILLION.format("8.00")
        + " from 2023-02-27 (rate not checked here)",
    ),
    _row(
        R.US_SEC_FEE,
        "2024-05-22",
        "0.0000278",
        "SEC Order Making FY2024 Annual Adjustments to Transaction Fee Rates (Release 34-99973): "
        + _SEC_PER_MILLION.format("27.80")
        + " from 2024-05-22 (the rate is confirmed by FINRA Information Notice 2025-04-24)",
    ),
    _row(
        R.US_SEC_FEE,
        "2025-05-14",
        "0",
        "SEC Fee Rate Advisory for FY2025; FINRA Information Notice 2025-04-24: from USD 27.80 to "
        "USD 0.00 per million for charge dates from 2025-05-14",
    ),
    # --- US: FINRA Trading Activity Fee (covered equity securities) ---
    _row(
        R.US_TAF_PER_SHARE,
        "2012-03-01",
        "0.000095",
        "FINRA Regulatory Notice 12-06: USD 0.000095 per share from 2012-03-01",
    ),
    _row(R.US_TAF_MAX, "2012-03-01", "4.75", "FINRA Regulatory Notice 12-06: cap USD 4.75 per trade from 2012-03-01"),
    _row(
        R.US_TAF_PER_SHARE,
        "2016-01-01",
        "0.000119",
        "FINRA By-Laws Schedule A s.1 (TAF rule flow: USD 0.000119 per share); date not checked here",
    ),
    _row(
        R.US_TAF_MAX,
        "2016-01-01",
        "5.95",
        "FINRA By-Laws Schedule A s.1 (TAF rule flow: USD 5.95 per trade); date not checked here",
    ),
    _row(
        R.US_TAF_PER_SHARE,
        "2022-01-01",
        "0.000130",
        "FINRA fee increase of 2021 (By-Laws Schedule A s.1), step 1 of 3 (not checked here)",
    ),
    _row(R.US_TAF_MAX, "2022-01-01", "6.49", "FINRA fee increase of 2021, step 1 of 3 (not checked here)"),
    _row(
        R.US_TAF_PER_SHARE,
        "2023-01-01",
        "0.000145",
        "FINRA fee increase of 2021 (By-Laws Schedule A s.1), step 2 of 3 (not checked here)",
    ),
    _row(R.US_TAF_MAX, "2023-01-01", "7.27", "FINRA fee increase of 2021, step 2 of 3 (not checked here)"),
    _row(
        R.US_TAF_PER_SHARE,
        "2024-01-01",
        "0.000166",
        "FINRA fee increase of 2021 (By-Laws Schedule A s.1), step 3 of 3 (not checked here)",
    ),
    _row(R.US_TAF_MAX, "2024-01-01", "8.30", "FINRA fee increase of 2021, step 3 of 3 (not checked here)"),
)


def _history(name: RateName) -> list[DatedRate]:
    rows = sorted((r for r in REGULATORY_RATES if r.name is name), key=lambda r: r.effective_from)
    if not rows:
        raise KeyError(f"no rows for {name}")
    return rows


_BY_NAME: dict[RateName, list[DatedRate]] = {name: _history(name) for name in RateName}


def rate_row(name: RateName, on: date) -> DatedRate:
    """The row in force on trade date ``on``: the latest whose ``effective_from`` is on or before it.

    Raises ``ValueError`` for a date before the table's first row of that rate."""
    rows = _BY_NAME[name]
    index = bisect_right([r.effective_from for r in rows], on) - 1
    if index < 0:
        raise ValueError(f"no {name.value} rate known before {rows[0].effective_from.isoformat()} (asked for {on})")
    return rows[index]


def rate(name: RateName, on: date) -> Decimal:
    """The value of ``name`` in force on trade date ``on`` (units in the module docstring)."""
    return rate_row(name, on).value
