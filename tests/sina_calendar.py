"""Sina's A-share trade calendar file (https://finance.sina.com.cn/realstock/company/klc_td_sh.txt),
built for tests: ``var datelist="...";`` whose string is a date list in Sina's compact encoding.

akshare's ``tool_trade_date_hist_sina`` decodes it with Sina's own JavaScript (``hk_js_decode`` in
akshare.stock.cons, run by py_mini_racer). :func:`encode_trade_days` is the inverse of that
script's date-list decoder (its function ``R``, data type 139), read from akshare 1.19's copy:

- the string is a bit stream, 6 bits a character (``A-Za-z0-9+/`` = 0..63), each character's bits
  from its lowest, and every number in it written lowest bit first;
- a header: the type, 12 bits (139), then 6 bits whose XOR with 63 is the version (0 here);
- the first and the last day, 18 bits each, as calendar days after 1990-12-19 (epoch day 7657);
- then every weekday from the first to the last in turn (the decoder steps over Saturdays and
  Sundays, so a weekend day cannot be listed): the first is listed, and the weekdays
  after it come in runs of listed days each announced by a header on the weekday before the run,
  which is itself not listed (a holiday). A run header is one bit (1: the width of run lengths
  changes, by a signed unary number: sign bit, then ones, then a zero), then the run's length in
  3 x width bits. The first header's length counts the first day too.

The tests decode what this builds with akshare's real decoder, so the encoding is checked there.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

SINA_CALENDAR_URL = "https://finance.sina.com.cn/realstock/company/klc_td_sh.txt"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DATE_LIST = 139  # Sina's data type of a plain date list
_DAY0 = date(1970, 1, 1) + timedelta(days=7657)  # 1990-12-19, the decoder's day zero
_WIDTH = 3  # run lengths in 3 x 3 = 9 bits: up to 511 trading days between two weekday holidays


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, width: int) -> None:
        if not 0 <= value < 1 << width:
            raise ValueError(f"{value} does not fit in {width} bits")
        self.bits.extend((value >> k) & 1 for k in range(width))

    def text(self) -> str:
        padded = self.bits + [0] * (-len(self.bits) % 6)
        return "".join(
            _ALPHABET[sum(bit << k for k, bit in enumerate(padded[i : i + 6]))] for i in range(0, len(padded), 6)
        )


def _day_number(day: date) -> int:
    return (day - _DAY0).days


def encode_trade_days(days: Iterable[date]) -> str:
    """The encoded string of ``days`` (weekdays, at least one) as Sina's calendar file holds it."""
    listed = sorted(set(days))
    if not listed:
        raise ValueError("no trading days to encode")
    weekend = [d for d in listed if d.weekday() >= 5]
    if weekend:
        raise ValueError(f"Sina's day count skips weekends: {weekend[0].isoformat()} cannot be listed")
    first, last = listed[0], listed[-1]
    weekdays = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    trading = set(listed)
    runs: list[int] = []  # the first run, then the run after each weekday holiday
    count = 0
    for day in (d for d in weekdays if d.weekday() < 5):
        if day in trading:
            count += 1
        else:
            runs.append(count)
            count = 0
    runs.append(count)

    bits = _Bits()
    bits.put(_DATE_LIST, 12)
    bits.put(63, 6)  # version 0
    bits.put(_day_number(first), 18)
    bits.put(_day_number(last), 18)
    for index, run in enumerate(runs):
        if index == 0:  # set the width once: +3 = sign 1, two ones, a zero
            bits.put(1, 1)
            bits.put(0b0111, 4)
        else:
            bits.put(0, 1)
        bits.put(run, 3 * _WIDTH)
    return bits.text()


def sina_calendar_file(days: Iterable[date]) -> str:
    """The body Sina serves at SINA_CALENDAR_URL for ``days``."""
    return f'var datelist="{encode_trade_days(days)}";'
