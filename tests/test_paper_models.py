"""The models the paper broker builds without validating again (venues.models.built: an order from
its request, a fill, an account, the run ledger's stored order) are the ones validation makes:
equal, with the same repr, dumps, JSON, set fields and field values (the very objects), and any
input that is not already of its field's type still goes through validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from storage.paper_ledger import _MUTABLE_ORDER_FIELDS, RunPaperLedger
from venues import calendars
from venues.models import (
    Account,
    Fill,
    Liquidity,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    with_changes,
)
from venues.paper import _account_of, _fill_of

D = Decimal
AT = datetime(2021, 7, 5, 13, 30, tzinfo=UTC)
REQUESTS = [
    OrderRequest(client_order_id="m-1", symbol="BTC/USD", side=Side.BUY, qty=D("0.5")),
    OrderRequest(
        client_order_id="l-1",
        symbol="600519.SH",
        side=Side.SELL,
        qty=D(100),
        type=OrderType.LIMIT,
        limit_price=D("2000.10"),
        signal_id="sig-1",
    ),
    OrderRequest(
        client_order_id="s-1",
        symbol="AMZN",
        side=Side.SELL,
        qty=D(3),
        type=OrderType.STOP,
        stop_price=D("150.00"),
        trail=D("2.5"),
        parent="m-1",
    ),
    OrderRequest(
        client_order_id="c-1", symbol="cu0", side=Side.BUY, qty=D(1), collar_low=D(69000), collar_high=D("71000.0")
    ),
]


def validated(model: BaseModel) -> BaseModel:
    """What validation makes of the fields ``model`` has set (the others left to their defaults)."""
    return type(model)(**{name: model.__dict__[name] for name in model.__pydantic_fields_set__})


def assert_same(built: BaseModel, made: BaseModel, *, remade: tuple[str, ...] = ()) -> None:
    """``remade``: fields each side computed anew (equal, not the same object)."""
    assert type(built) is type(made)
    assert built == made and made == built
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    assert list(built.__dict__) == list(made.__dict__)  # repr and iteration follow this order
    for name, value in made.__dict__.items():
        # Not only equal (Decimal('1.0') == Decimal('1')): the very value validation keeps.
        assert built.__dict__[name] is value or (name in remade and built.__dict__[name] == value), name
    assert built.__pydantic_fields_set__ == made.__pydantic_fields_set__
    assert type(built.__pydantic_fields_set__) is type(made.__pydantic_fields_set__)
    assert built.__pydantic_fields_set__ is not made.__pydantic_fields_set__
    assert built.__pydantic_extra__ == made.__pydantic_extra__
    assert built.__pydantic_private__ == made.__pydantic_private__
    assert built.model_dump() == made.model_dump()
    assert built.model_dump(exclude_unset=True) == made.model_dump(exclude_unset=True)
    assert built.model_dump(exclude_defaults=True) == made.model_dump(exclude_defaults=True)
    assert built.model_dump_json() == made.model_dump_json()
    assert built.model_copy(update={}) == made.model_copy(update={})


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.client_order_id)
@pytest.mark.parametrize(
    ("status", "reason", "symbol"),
    [(OrderStatus.PENDING, "", None), (OrderStatus.REJECTED, "insufficient cash", "VENUE-SPELLING")],
)
def test_an_order_from_its_request_is_the_one_validation_makes(
    request_: OrderRequest, status: OrderStatus, reason: str, symbol: str | None
) -> None:
    order = Order.from_request(request_, "paper", at=AT, status=status, reason=reason, symbol=symbol)
    made = Order(
        client_order_id=request_.client_order_id,
        venue="paper",
        symbol=symbol or request_.symbol,
        side=request_.side,
        type=request_.type,
        qty=request_.qty,
        limit_price=request_.limit_price,
        stop_price=request_.stop_price,
        trail=request_.trail,
        parent=request_.parent,
        collar_low=request_.collar_low,
        collar_high=request_.collar_high,
        status=status,
        reason=reason,
        created_at=AT,
        updated_at=AT,
        signal_id=request_.signal_id,
    )
    assert_same(order, made)
    assert_same(order, validated(order))
    changed = {"status": OrderStatus.FILLED, "filled_qty": order.qty, "updated_at": AT + timedelta(hours=1)}
    assert_same(with_changes(order, changed), with_changes(made, changed))


class _Name(str):
    pass


@pytest.mark.parametrize(
    "odd",
    [
        {"at": datetime(2021, 7, 5, 21, 30, tzinfo=timezone(timedelta(hours=8)))},  # aware, not UTC
        {"venue": _Name("paper")},  # a str subclass: validation makes it a str
        {"symbol": _Name("BTC/USD")},
        {"status": "pending"},  # not the enum member: validation makes it one
    ],
    ids=["non-utc", "venue-subclass", "symbol-subclass", "status-text"],
)
def test_an_order_from_inputs_of_other_types_is_still_validated(odd: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"at": AT, "status": OrderStatus.PENDING, "venue": "paper", "symbol": None, **odd}
    venue = kwargs.pop("venue")
    order = Order.from_request(REQUESTS[0], venue, **kwargs)
    assert order.created_at == AT and order.created_at.tzinfo is UTC
    assert type(order.venue) is str and type(order.symbol) is str and order.status is OrderStatus.PENDING
    assert_same(order, validated(order))


def test_a_naive_time_is_refused_as_before() -> None:
    with pytest.raises(ValidationError, match="naive datetime"):
        Order.from_request(REQUESTS[0], "paper", at=datetime(2021, 7, 5, 13, 30))


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.client_order_id)
def test_a_fill_is_the_one_validation_makes(request_: OrderRequest) -> None:
    order = Order.from_request(request_, "paper", at=AT)
    price, fee = D("2000.10"), D("0.50")
    fill = _fill_of(order, "paper", price, fee, Liquidity.MAKER, AT, "2021-07-05")
    made = Fill(
        client_order_id=order.client_order_id,
        venue="paper",
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        price=price,
        fee=fee,
        liquidity=Liquidity.MAKER,
        ts=AT,
        trade_day="2021-07-05",
    )
    assert_same(fill, made)
    # Anything else is validated, as before: a float price becomes a Decimal, a str subclass a str.
    odd = _fill_of(order, _Name("paper"), 2000.1, 0, Liquidity.MAKER, AT, "2021-07-05")  # type: ignore[arg-type]
    assert type(odd.venue) is str and odd.price == D("2000.1") and type(odd.fee) is Decimal
    assert_same(odd, validated(odd))


POSITION = Position(venue="paper", symbol="BTC/USD", qty=D("0.5"), avg_cost=D(30000), opened_at=AT, updated_at=AT)


@pytest.mark.parametrize("positions", [(), (POSITION,)], ids=["flat", "held"])
@pytest.mark.parametrize("deposited", [D(1000), None], ids=["deposited", "venue-kept"])
def test_an_account_is_the_one_validation_makes(positions: tuple[Position, ...], deposited: Decimal | None) -> None:
    cash, reserved, value = D("985.25"), D(0), D("15000.00")
    account = _account_of("paper", "USD", cash, reserved, value, positions, "", deposited)
    made = Account(
        venue="paper",
        currency="USD",
        cash=cash,
        reserved_cash=reserved,
        positions_value=value,
        equity=cash + value,
        positions=positions,
        unfunded="",
        deposited=deposited,
    )
    assert account == made and repr(account) == repr(made)
    assert account.model_dump_json() == made.model_dump_json()
    assert account.__pydantic_fields_set__ == made.__pydantic_fields_set__
    assert list(account.__dict__) == list(made.__dict__)
    # Each its own sum: equal, not the same object; the positions are the same ones, in a tuple.
    assert all(account.__dict__[k] is v for k, v in made.__dict__.items() if k not in ("equity", "positions"))
    assert account.equity == made.equity and str(account.equity) == str(made.equity)
    assert all(a is b for a, b in zip(account.positions, made.positions, strict=True))
    assert account.available_cash == made.available_cash


def test_an_account_of_a_ledger_answering_in_other_types_is_still_validated() -> None:
    # A ledger whose cash is an int: validation turns it into a Decimal, as before.
    account = _account_of("paper", "USD", 1000, D(0), D(0), (), "", D(1000))  # type: ignore[arg-type]
    assert type(account.cash) is Decimal and account.equity == D(1000)
    assert_same(account, validated(account))
    with pytest.raises(ValidationError):
        _account_of("paper", "USD", D(1), D(0), D(0), ({"venue": "x"},), "", None)  # type: ignore[arg-type]


def test_the_run_ledger_stores_an_update_as_with_changes_did() -> None:
    ledger = RunPaperLedger(None)  # type: ignore[arg-type]  # no flush here: the engine is never used
    placed = Order.from_request(REQUESTS[2], "paper", at=AT)
    ledger.add_order(placed)
    later = AT + timedelta(hours=2)
    # The broker's copy: moved and noted (one change each), and a field it may not change.
    update = with_changes(
        placed,
        {"stop_price": D("151.00"), "checked_until": later, "reason": "x" * 600, "updated_at": later, "symbol": "NO"},
    )
    ledger.update_order(update)
    given = update.__dict__
    expected = with_changes(
        placed, {**{name: given[name] for name in _MUTABLE_ORDER_FIELDS}, "reason": update.reason[:500]}
    )
    stored = ledger.order(placed.client_order_id)
    assert stored is not None
    assert_same(stored, expected, remade=("reason",))
    assert stored.symbol == "AMZN" and len(stored.reason) == 500


@pytest.mark.parametrize(
    "moment",
    [
        AT,
        datetime(2021, 7, 5, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2021, 7, 6, 7, 30, tzinfo=timezone(timedelta(hours=8))),  # 2021-07-05 23:30 UTC
    ],
)
def test_a_24_7_trading_day_is_the_utc_day(moment: datetime) -> None:
    assert calendars.trading_day("24/7", moment) == moment.astimezone(UTC).date()
    library = calendars.get_calendar("24/7")
    assert calendars.trading_day("24/7", moment) == library.minute_to_session(moment, direction="next").date()


def test_a_24_7_trading_day_of_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        calendars.trading_day("24/7", datetime(2021, 7, 5, 13, 30))
