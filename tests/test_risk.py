"""The deterministic risk gate: each rule blocks (or shrinks) with its numbers in the reason and
passes at its boundary, on proposals costed by tools.sizing.propose with the arithmetic in comments.

The baseline: one lot (100) of 600519.SH, entry 1800, stop 1750, one target 2000, 10 bps slippage.
  Buy: fill 1801.80; 180180.00 -> commission 45.045 -> 45.05, transfer 1.8018 -> 1.80: 46.85;
       slippage 1.80 x 100 = 180.00 -> entry costs 226.85
  TP:  fill 1998.00; 199800.00 -> commission 49.95, stamp 99.90, transfer 1.998 -> 2.00: 151.85;
       slippage 2.00 x 100 = 200.00; gross 200 x 100 = 20000
  expected = 20000 - 226.85 - 151.85 - 200.00 = 19421.30 (10.8% of the 180000 notional)
  Stop: fill 1748.25; 53.55 x 100 = 5355.00 + 46.85 + sell fee on 174825.00 (commission 43.70625 ->
       43.71, stamp 87.4125 -> 87.41, transfer 1.74825 -> 1.75 = 132.87) -> loss at stop 5534.72
  reward/risk = 19421.30 / 5534.72 = 3.51
With 2,000,000 CNY of equity it is 9% of equity: every profile allows it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.support import replay_instrument
from tools.models import Action, Proposal, RiskCheck, RiskVerdict, Signal
from tools.risk import PROFILES, RiskContext, check, profile
from tools.sizing import propose, sized_buy
from venues.models import FundingTerms, Instrument, UsEquityFees

D = Decimal
SLIP = D(10)
NOW = datetime(2021, 6, 1, 3, 0, tzinfo=UTC)
EQUITY = D(2_000_000)
# Proposals are costed at the fee rates of this trade date (stamp duty 0.05%, transfer fee 0.001%),
# the rates the arithmetic above uses; the gate re-costs a shrunk proposal at the same date.
ON = date(2024, 6, 3)

MOUTAI = replay_instrument("600519.SH")
# Zero commission and, below, zero slippage: the boundaries of the money rules land exactly.
AMZN = replay_instrument("AMZN")


def buy(*take_profits: str, confidence: float = 0.8, symbol: str = "600519.SH", entry: str = "1800") -> Signal:
    stop = "1750" if symbol == "600519.SH" else "95"
    return Signal(
        action=Action.BUY,
        symbol=symbol,
        entry=D(entry),
        stop=D(stop),
        take_profits=tuple(D(tp) for tp in take_profits or ("2000",)),
        confidence=confidence,
    )


def proposal(qty: int = 100, *take_profits: str, confidence: float = 0.8) -> Proposal:
    return propose(buy(*take_profits, confidence=confidence), MOUTAI, D(qty), slippage_bps=SLIP, on=ON)


def context(**changes: Any) -> RiskContext:
    values: dict[str, Any] = {"now": NOW, "equity": EQUITY, "day_start_equity": EQUITY}
    return RiskContext(**(values | changes))


def judge(p: Proposal, ctx: RiskContext, name: str = "medium", instrument: Instrument = MOUTAI) -> RiskVerdict:
    verdict, _ = check(p, ctx, profile(name), instrument, slippage_bps=SLIP)
    return verdict


def outcome(verdict: RiskVerdict, rule: str) -> RiskCheck:
    found = [c for c in verdict.checks if c.rule == rule]
    assert len(found) == 1, f"{rule} checked {len(found)} times in {verdict.checks}"
    return found[0]


def blocked_by(verdict: RiskVerdict, rule: str, detail: str) -> None:
    """The rule failed with exactly this reason, and a failed rule means no order at all."""
    assert outcome(verdict, rule) == RiskCheck(rule=rule, passed=False, detail=detail)
    assert (verdict.decision, verdict.qty) == ("block", 0)
    assert detail in verdict.reasons


def passes(verdict: RiskVerdict, rule: str, detail: str | None = None) -> None:
    check_ = outcome(verdict, rule)
    assert check_.passed, check_.detail
    if detail is not None:
        assert check_.detail == detail


# --- the baseline ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_baseline_passes_every_rule_in_order_on_every_profile(name: str) -> None:
    p = proposal()
    assert (p.expected_net_profit, p.loss_at_stop) == (D("19421.30"), D("5534.72"))  # see the module docstring
    verdict = judge(p, context(), name)
    assert (verdict.decision, verdict.qty, verdict.reasons) == ("allow", D(100), [])
    # Cooldown and correlation only appear when there is a last trade / a held symbol to compare.
    assert [c.rule for c in verdict.checks] == [
        "kill_switch",
        "daily_loss_limit",
        "max_trades_per_day",
        "max_concurrent_positions",
        "min_confidence",
        "max_position_value",
        "min_expected_net_profit",
        "min_reward_risk",
    ]


# --- one rule at a time (medium profile unless said otherwise) -----------------------------------


def test_kill_switch_blocks_every_entry_with_the_reason_it_was_pulled() -> None:
    blocked_by(
        judge(proposal(), context(killed=True, kill_reason="paused by alice")),
        "kill_switch",
        "trading is paused: paused by alice",
    )
    blocked_by(judge(proposal(), context(killed=True)), "kill_switch", "trading is paused: kill switch on")
    passes(judge(proposal(), context()), "kill_switch", "trading is on")


def test_daily_loss_limit_blocks_once_the_loss_reaches_the_limit() -> None:
    # medium: 2% of the 2,000,000 the day started with = 40,000
    at_limit = context(equity=D(1_960_000))
    blocked_by(judge(proposal(), at_limit), "daily_loss_limit", "today's loss 2.00% vs the limit 2.00%")
    passes(judge(proposal(), context(equity=D(1_970_000))), "daily_loss_limit", "today's loss 1.50% vs the limit 2.00%")
    # a day in profit is a negative loss
    passes(judge(proposal(), context(equity=D(2_100_000))), "daily_loss_limit")


def test_max_trades_per_day_blocks_the_trade_over_the_limit() -> None:
    blocked_by(judge(proposal(), context(trades_today=5)), "max_trades_per_day", "5 trades today, limit 5")
    passes(judge(proposal(), context(trades_today=4)), "max_trades_per_day", "4 trades today, limit 5")


def test_cooldown_per_symbol_blocks_until_it_has_fully_elapsed() -> None:
    soon = context(last_trade_at=NOW - timedelta(hours=1, minutes=59))
    blocked_by(judge(proposal(), soon), "cooldown", "last 600519.SH trade 1h59m ago, cooldown 2h00m")
    exactly = context(last_trade_at=NOW - timedelta(hours=2))
    passes(judge(proposal(), exactly), "cooldown", "last 600519.SH trade 2h00m ago, cooldown 2h00m")
    assert "cooldown" not in [c.rule for c in judge(proposal(), context()).checks]  # never traded


def test_max_concurrent_positions_counts_only_new_symbols() -> None:
    five = ("000001.SZ", "601318.SH", "600036.SH", "000858.SZ", "600276.SH")
    blocked_by(judge(proposal(), context(open_symbols=five)), "max_concurrent_positions", "5 positions open, limit 5")
    passes(judge(proposal(), context(open_symbols=five[:4])), "max_concurrent_positions", "4 positions open, limit 5")
    # Adding to a symbol already held opens no new position, even with the limit reached.
    # (100 held + 100 more = 360,000 CNY, within the 20% = 400,000 cap.)
    adding = context(open_symbols=(*five[:4], "600519.SH"), held_qty=D(100), sellable_qty=D(100))
    verdict = judge(proposal(), adding)
    passes(verdict, "max_concurrent_positions", "5 positions open, limit 5")
    assert verdict.decision == "allow"
    # Even over the limit (e.g. after switching to a stricter profile), a held symbol is no new position.
    over = context(open_symbols=(*five[:3], "600519.SH"), held_qty=D(100), sellable_qty=D(100))
    passes(judge(proposal(), over, "low"), "max_concurrent_positions", "4 positions open, limit 3")
    blocked_by(
        judge(proposal(), context(open_symbols=five[:3]), "low"),
        "max_concurrent_positions",
        "3 positions open, limit 3",
    )


def test_min_confidence_blocks_below_the_profile_minimum() -> None:
    blocked_by(judge(proposal(confidence=0.59), context()), "min_confidence", "confidence 0.59, minimum 0.60")
    passes(judge(proposal(confidence=0.6), context()), "min_confidence", "confidence 0.60, minimum 0.60")


def test_correlation_cap_names_the_most_correlated_held_symbol() -> None:
    held = context(open_symbols=("000001.SZ", "601318.SH"), correlations={"000001.SZ": 0.3, "601318.SH": 0.85})
    blocked_by(judge(proposal(), held), "correlation", "correlation +0.85 with 601318.SH held, cap 0.80")
    at_cap = context(open_symbols=("000001.SZ", "601318.SH"), correlations={"000001.SZ": 0.3, "601318.SH": 0.8})
    passes(judge(proposal(), at_cap), "correlation", "correlation +0.80 with 601318.SH held, cap 0.80")


def test_max_position_value_shrinks_to_the_cap_rounded_down_to_the_lot() -> None:
    # 300 x 1800 = 540,000 > 20% x 2,000,000 = 400,000; 400,000 / 1800 = 222.2 -> 200 shares
    verdict, shrunk = check(proposal(300), context(), profile("medium"), MOUTAI, slippage_bps=SLIP)
    assert (verdict.decision, verdict.qty) == ("shrink", D(200))
    passes(verdict, "max_position_value", "value 540000.00 above the cap 400000.00 CNY: shrunk to 200")
    # The proposal comes back re-costed at the allowed size, and the later rules judged that one:
    # 200 shares: buy 360360.00 -> 90.09 + 3.60 = 93.69, slippage 360.00; sell 399600.00 -> 99.90 +
    # 199.80 + 4.00 = 303.70, slippage 400.00; expected 40000 - 93.69 - 360 - 303.70 - 400 = 38842.61
    assert (shrunk.qty, shrunk.notional, shrunk.expected_net_profit) == (D(200), D(360000), D("38842.61"))
    assert shrunk == propose(
        buy(), MOUTAI, D(200), slippage_bps=SLIP, notes=("shrunk by risk to 200 (max position value)",), on=ON
    )
    passes(verdict, "min_expected_net_profit")  # 38842.61 >= 0.5% x 360,000 = 1800
    assert verdict.reasons == []


def test_max_position_value_passes_at_the_cap_and_blocks_when_not_one_lot_fits() -> None:
    # 20% of 900,000 = 180,000: exactly one lot at 1800
    passes(
        judge(proposal(), context(equity=D(900_000), day_start_equity=D(900_000))),
        "max_position_value",
        "value 180000.00 within the cap 180000.00",
    )
    # 20% of 800,000 = 160,000 / 1800 = 88.9 shares: not a lot
    small = context(equity=D(800_000), day_start_equity=D(800_000))
    blocked_by(
        judge(proposal(), small), "max_position_value", "value 180000.00 above the cap 160000.00 CNY: not one lot fits"
    )


def test_max_position_value_counts_the_position_already_held() -> None:
    # The cap is on the position: 100 held (180,000 at the entry) + 200 more (360,000) would be
    # 540,000 > 400,000; the room left is 220,000 / 1800 = 122.2 -> one lot of 100.
    adding = context(open_symbols=("600519.SH",), held_qty=D(100), sellable_qty=D(100))
    verdict, shrunk = check(proposal(200), adding, profile("medium"), MOUTAI, slippage_bps=SLIP)
    assert (verdict.decision, verdict.qty, shrunk.qty) == ("shrink", D(100), D(100))
    passes(
        verdict,
        "max_position_value",
        "value 360000.00 above the cap 400000.00 CNY (180000.00 already held): shrunk to 100",
    )
    # with 200 held the room is 40,000: not one lot
    full = context(open_symbols=("600519.SH",), held_qty=D(200), sellable_qty=D(200))
    blocked_by(
        judge(proposal(100), full),
        "max_position_value",
        "value 180000.00 above the cap 400000.00 CNY (360000.00 already held): not one lot fits",
    )


def test_min_expected_net_profit_after_costs() -> None:
    # TP 1812: fill 1810.188 -> 1810.18; sell 181018.00 -> 45.2545 -> 45.25 + 90.509 -> 90.51 +
    # 1.81018 -> 1.81 = 137.57; slippage 182.00; expected 1200 - 226.85 - 137.57 - 182 = 653.58,
    # costs 226.85 + 137.57 + 182 = 546.42; medium wants 0.5% of 180,000 = 900.00
    blocked_by(
        judge(proposal(100, "1812"), context()),
        "min_expected_net_profit",
        "net if all targets hit 653.58 CNY after costs 546.42, minimum 900.00 (0.50% of value)",
    )
    # TP 1803: fill 1801.197 -> 1801.19; sell 180119.00 -> 45.02975 -> 45.03 + 90.0595 -> 90.06 +
    # 1.80119 -> 1.80 = 136.89; slippage 181.00; the 300 of gross does not cover the costs:
    # 300 - 226.85 - 136.89 - 181.00 = -244.74, blocked even by high (0.2% of value = 360.00)
    loss = judge(proposal(100, "1803"), context(), "high")
    assert not outcome(loss, "min_expected_net_profit").passed
    assert outcome(loss, "min_expected_net_profit").detail.startswith("net if all targets hit -244.74 CNY")


def test_a_trade_losing_money_after_costs_is_blocked_even_with_no_minimum() -> None:
    no_minimum = PROFILES["high"].model_copy(update={"min_net_profit_pct": D(0)})
    verdict, _ = check(proposal(100, "1803"), context(), no_minimum, MOUTAI, slippage_bps=SLIP)
    assert not outcome(verdict, "min_expected_net_profit").passed
    assert verdict.decision == "block"


def test_a_trade_earning_exactly_nothing_after_costs_is_blocked_even_with_no_minimum() -> None:
    # 10 shares, 100 -> 100.01, no slippage, 0.5 cent a share each way: gross 0.10 - 0.05 - 0.05 = 0
    per_share = AMZN.model_copy(update={"fees": UsEquityFees(commission_per_share=D("0.005"))})
    p = propose(buy("100.01", symbol="AMZN", entry="100"), per_share, D(10), slippage_bps=D(0), on=ON)
    assert p.expected_net_profit == 0
    no_minimum = PROFILES["high"].model_copy(update={"min_net_profit_pct": D(0)})
    ctx = context(equity=D(10_000), day_start_equity=D(10_000))
    verdict, _ = check(p, ctx, no_minimum, per_share, slippage_bps=D(0))
    blocked_by(
        verdict,
        "min_expected_net_profit",
        "net if all targets hit 0.00 USD after costs 0.10, minimum 0.00 (0.00% of value)",
    )


def test_money_rules_pass_exactly_at_their_boundaries() -> None:
    # AMZN, no commission and no slippage: 10 shares at 100, stop 95 -> loss at stop 50.00.
    def us(tp: str) -> RiskVerdict:
        p = propose(buy(tp, symbol="AMZN", entry="100"), AMZN, D(10), slippage_bps=D(0), on=ON)
        verdict, _ = check(
            p, context(equity=D(10_000), day_start_equity=D(10_000)), profile("medium"), AMZN, slippage_bps=D(0)
        )
        return verdict

    # medium: 0.5% of the 1000 notional = 5.00; TP 100.50 earns exactly 5.00, TP 100.49 4.90
    passes(
        us("100.50"),
        "min_expected_net_profit",
        "net if all targets hit 5.00 USD after costs 0.00, minimum 5.00 (0.50% of value)",
    )
    assert not outcome(us("100.49"), "min_expected_net_profit").passed
    # medium: reward/risk 1.5; TP 107.50 earns 75.00 = 1.5 x 50.00, TP 107.49 74.90 (1.498)
    passes(us("107.50"), "min_reward_risk", "reward/risk 1.50 after costs, minimum 1.50")
    assert us("107.50").decision == "allow"
    assert not outcome(us("107.49"), "min_reward_risk").passed
    blocked_by(us("107.45"), "min_reward_risk", "reward/risk 1.49 after costs, minimum 1.50")  # 74.50 / 50


def test_min_reward_risk_after_costs() -> None:
    # TP 1880: fill 1878.12; sell 187812.00 -> 46.953 -> 46.95 + 93.906 -> 93.91 + 1.87812 -> 1.88 =
    # 142.74; slippage 188.00; expected 8000 - 226.85 - 142.74 - 188 = 7442.41; / 5534.72 = 1.34
    blocked_by(judge(proposal(100, "1880"), context()), "min_reward_risk", "reward/risk 1.34 after costs, minimum 1.50")
    passes(
        judge(proposal(100, "1880"), context(), "high"), "min_reward_risk", "reward/risk 1.34 after costs, minimum 1.20"
    )


# --- the three profiles ------------------------------------------------------------------------

# TP 1900: fill 1898.10; 189810.00 -> 47.4525 -> 47.45 + 94.905 -> 94.91 + 1.8981 -> 1.90 = 144.26;
# slippage 190.00; expected 10000 - 226.85 - 144.26 - 190 = 9438.89 -> reward/risk 1.71, 5.2% of value.
# TP 1820: fill 1818.18; 181818.00 -> 45.4545 -> 45.45 + 90.909 -> 90.91 + 1.81818 -> 1.82 = 138.18;
# slippage 182.00; expected 2000 - 226.85 - 138.18 - 182 = 1452.97 -> 0.81% of 180,000.
# TP 1812: 653.58 (above) -> 0.36%; TP 1880: reward/risk 1.34 (above).
PROFILE_CASES = [
    # (what differs from the baseline, the rule, passes on (low, medium, high))
    ({"confidence": 0.65}, "min_confidence", (False, True, True)),
    ({"confidence": 0.55}, "min_confidence", (False, False, True)),
    ({"trades_today": 2}, "max_trades_per_day", (False, True, True)),
    ({"trades_today": 5}, "max_trades_per_day", (False, False, True)),
    ({"last_trade_at": NOW - timedelta(hours=1)}, "cooldown", (False, False, True)),
    ({"last_trade_at": NOW - timedelta(hours=3)}, "cooldown", (False, True, True)),
    ({"equity": D(1_970_000)}, "daily_loss_limit", (False, True, True)),  # 1.5%
    ({"equity": D(1_940_000)}, "daily_loss_limit", (False, False, True)),  # 3%
    ({"open_symbols": ("A", "B", "C")}, "max_concurrent_positions", (False, True, True)),
    ({"open_symbols": ("A", "B", "C", "D", "E")}, "max_concurrent_positions", (False, False, True)),
    ({"open_symbols": ("A",), "correlations": {"A": 0.75}}, "correlation", (False, True, True)),
    ({"open_symbols": ("A",), "correlations": {"A": 0.85}}, "correlation", (False, False, True)),
    # 180,000 of 1,000,000 = 18%: over low's 10% (100,000 / 1800 = 55 shares, not a lot)
    ({"equity": D(1_000_000), "day_start_equity": D(1_000_000)}, "max_position_value", (False, True, True)),
    # 180,000 of 600,000 = 30%: medium's 120,000 / 1800 = 66 shares, not a lot; high's 35% holds it
    ({"equity": D(600_000), "day_start_equity": D(600_000)}, "max_position_value", (False, False, True)),
    ({"take_profits": ("1900",)}, "min_reward_risk", (False, True, True)),  # 1.71 vs 2.0 / 1.5 / 1.2
    ({"take_profits": ("1880",)}, "min_reward_risk", (False, False, True)),  # 1.34
    ({"take_profits": ("1820",)}, "min_expected_net_profit", (False, True, True)),  # 0.81% vs 1% / 0.5% / 0.2%
    ({"take_profits": ("1812",)}, "min_expected_net_profit", (False, False, True)),  # 0.36%
]


@pytest.mark.parametrize(("change", "rule", "expected"), PROFILE_CASES)
def test_each_profile_number_decides(change: dict[str, Any], rule: str, expected: tuple[bool, bool, bool]) -> None:
    change = dict(change)
    p = proposal(100, *change.pop("take_profits", ()), confidence=change.pop("confidence", 0.8))
    ctx = context(**change)
    assert tuple(outcome(judge(p, ctx, name), rule).passed for name in ("low", "medium", "high")) == expected


def test_same_proposal_allowed_on_high_blocked_on_low_with_the_reasons() -> None:
    # confidence 0.65 and 18% of a 1,000,000 account: fine for high (0.50, 35%), not for low (0.70, 10%)
    p = proposal(100, confidence=0.65)
    ctx = context(equity=D(1_000_000), day_start_equity=D(1_000_000))
    high = judge(p, ctx, "high")
    assert (high.decision, high.qty, high.reasons) == ("allow", D(100), [])
    low = judge(p, ctx, "low")
    assert (low.decision, low.qty) == ("block", 0)
    assert low.reasons == [
        "confidence 0.65, minimum 0.70",
        "value 180000.00 above the cap 100000.00 CNY: not one lot fits",
    ]


# --- SELL: exits reduce risk, only the position is checked --------------------------------------


def sell(qty: int) -> Proposal:
    # 1900 held at 1800: fill 1898.10, 200 shares realise 19331.48 after 288.52 of fees (test_sizing)
    signal = Signal(action=Action.SELL, symbol="600519.SH", entry=D(1900))
    return propose(signal, MOUTAI, D(qty), slippage_bps=SLIP, avg_cost=D(1800), on=ON)


def test_sell_is_allowed_with_the_kill_switch_on() -> None:
    ctx = context(killed=True, kill_reason="paused", held_qty=D(300), sellable_qty=D(300), trades_today=99)
    verdict, p = check(sell(300), ctx, profile("low"), MOUTAI, slippage_bps=SLIP)
    assert (verdict.decision, verdict.qty, verdict.reasons) == ("allow", D(300), [])
    assert verdict.checks == (RiskCheck(rule="position", passed=True, detail="selling 300 of 300 held"),)
    assert p == sell(300)


def test_sell_without_a_position_is_blocked() -> None:
    blocked_by(judge(sell(100), context()), "position", "no 600519.SH position to sell")


def test_sell_of_shares_bought_today_is_blocked_by_t_plus_1() -> None:
    verdict = judge(sell(100), context(held_qty=D(100), sellable_qty=D(0)))
    blocked_by(verdict, "position", "600519.SH bought today cannot be sold before the next session (T+1)")


def test_sell_shrinks_to_the_sellable_quantity_and_is_recosted() -> None:
    # 300 held, 100 of them bought today: 200 may be sold now
    verdict, p = check(
        sell(300), context(held_qty=D(300), sellable_qty=D(200)), profile("medium"), MOUTAI, slippage_bps=SLIP
    )
    assert (verdict.decision, verdict.qty) == ("shrink", D(200))
    passes(verdict, "position", "selling 200 of 300 held")
    # The card shows the allowed size, so its numbers must be the 200's: 19331.48 realised (above).
    assert (p.qty, p.notional, p.expected_net_profit) == (D(200), D(380000), D("19331.48"))
    assert p.fees_round_trip == D("668.52")


def test_sell_of_nothing_is_blocked_even_when_a_position_is_held() -> None:
    blocked_by(
        judge(sell(0), context(held_qty=D(300), sellable_qty=D(300))),
        "position",
        "the proposal sells nothing (0 600519.SH)",
    )


def test_a_shrink_below_the_venue_minimum_is_blocked() -> None:
    # Equity 40 on the medium profile caps the position at 8 USD.
    btc = replay_instrument("BTC/USD")  # 10 USD minimum
    signal = Signal(
        action=Action.BUY, symbol="BTC/USD", entry=D(40000), stop=D(39000), take_profits=(D(44000),), confidence=0.8
    )
    p = propose(signal, btc, D("0.0005"), slippage_bps=SLIP, on=ON)  # 20 USD
    verdict, _ = check(p, context(equity=D(40), day_start_equity=D(40)), profile("medium"), btc, slippage_bps=SLIP)
    # 20% of 40 = 8 USD: 0.0002 BTC = 8.00 USD fits the cap but not the 10 USD minimum.
    blocked_by(verdict, "min_notional", "shrunk order value 8.00 is below the venue minimum 10 USD")


def test_a_size_below_the_venue_minimum_quantity_is_blocked() -> None:
    # A venue whose orders start at 0.001 BTC (ccxt's limits.amount.min) although its step is finer.
    btc = replay_instrument("BTC/USD").model_copy(update={"min_qty": D("0.001"), "min_notional": D(0)})
    signal = Signal(
        action=Action.BUY, symbol="BTC/USD", entry=D(40000), stop=D(39000), take_profits=(D(44000),), confidence=0.8
    )
    small = propose(signal, btc, D("0.0005"), slippage_bps=SLIP, on=ON)
    blocked_by(
        judge(small, context(), instrument=btc),
        "min_qty",
        "size 0.0005 BTC/USD is below the venue's minimum order quantity of 0.001",
    )
    # 20% of an equity of 300 caps the position at 60 USD: 0.0015 BTC shrinks to 0.0015 -> fits;
    # of 150, 30 USD: 0.0007 BTC, below the minimum.
    p = propose(signal, btc, D("0.002"), slippage_bps=SLIP, on=ON)
    ok, _ = check(p, context(equity=D(300), day_start_equity=D(300)), profile("medium"), btc, slippage_bps=SLIP)
    assert "min_qty" not in {c.rule for c in ok.checks} and ok.qty == D("0.0015")
    shrunk, _ = check(p, context(equity=D(150), day_start_equity=D(150)), profile("medium"), btc, slippage_bps=SLIP)
    blocked_by(shrunk, "min_qty", "shrunk size 0.0007 BTC/USD is below the venue's minimum order quantity of 0.001")


def test_a_ratio_just_under_the_minimum_never_reads_as_the_minimum() -> None:
    from tools.risk import _floor2

    assert (_floor2(1.498), _floor2(1.5), _floor2(2.0)) == ("1.49", "1.50", "2.00")


# --- HOLD / ABSTAIN ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [Action.HOLD, Action.ABSTAIN])
def test_hold_and_abstain_never_produce_an_order(action: Action) -> None:
    # Even a malformed proposal claiming a size must not reach the broker.
    p = Proposal(
        venue="replay-cn",
        symbol="600519.SH",
        currency="CNY",
        signal=Signal(action=action, symbol="600519.SH"),
        qty=D(100),
        notional=D(180000),
        fees_round_trip=D(0),
        loss_at_stop=D(0),
        expected_net_profit=D(0),
        reward_risk=0.0,
    )
    verdict = judge(p, context(held_qty=D(100), sellable_qty=D(100)), "high")
    assert verdict == RiskVerdict(
        decision="block",
        qty=D(0),
        checks=(RiskCheck(rule="action", passed=False, detail=f"{action.value} places no order"),),
    )


# --- the exit plan: every tranche and the stop exit must be orders the venue takes ---------------

BTC = replay_instrument("BTC/USD")  # step 0.0001, minimum order 10 USD, taker 25 bps
ISSUE_SIGNAL = Signal(
    action=Action.BUY,
    symbol="BTC/USD",
    entry=D(34000),
    stop=D(33000),
    take_profits=(D(35500), D(36500), D(37500)),
    confidence=0.8,
)


def sized_btc(equity: str) -> Proposal:
    medium = profile("medium")
    return sized_buy(
        ISSUE_SIGNAL,
        BTC,
        equity=D(equity),
        available_cash=D(equity),
        risk_per_trade_pct=medium.risk_per_trade_pct,
        max_position_pct=medium.max_position_pct,
        slippage_bps=D(5),
        on=ON,
    )


def test_issue_btc_plan_on_a_60_usd_account_is_blocked_not_reshaped_because_its_stop_exit_is_under_10_usd() -> None:
    """The issue's input: 60 USD, medium profile, BUY 34000, stop 33000, TP 35500/36500/37500, 5 bps.

    Sized 0.0003 BTC (20% of 60 = 12 USD over the slipped entry 34017.00 = 0.00035 -> 0.0003), worth
    10.20 USD at the entry, so the order itself clears the 10 USD minimum. Sold at the stop (33000 x
    0.9995 = 32983.50) it is 9.895 USD: the venue would refuse the stop exit, and every tranche is
    smaller still. No reshape helps: the smallest position that could be sold at the stop, 0.0004 BTC
    (13.61 USD at the entry), is over the profile's 12 USD cap. So the gate blocks, and says why."""
    p = sized_btc("60")
    assert (p.qty, p.notional) == (D("0.0003"), D("10.2000"))
    assert p.exit_qtys == (D(0), D(0), D("0.0003"))  # merged: no tranche but the whole clears anything
    verdict, _ = check(p, context(equity=D(60), day_start_equity=D(60)), profile("medium"), BTC, slippage_bps=D(5))
    passes(verdict, "max_position_value", "value 10.20 within the cap 12.00")
    blocked_by(
        verdict,
        "exit_plan",
        "the stop exit of 0.0003 BTC/USD at 32983.50 (the stop 33000 after 5 bps slippage) is 9.89 USD, "
        "below the venue minimum of 10 USD",
    )


def test_btc_plan_on_a_200_usd_account_is_allowed_with_tp1_merged_into_tp2() -> None:
    # 20% of 200 = 40 USD / 34017.00 = 0.001176 -> 0.0011 BTC; at the stop fill 32983.50 it is 36.28 USD.
    # The smallest sellable tranche there is 0.0004 (10 / 32983.50 = 0.000303): 30/40/30 would be
    # 0.0003 / 0.0004 / 0.0004, so TP1's 0.0003 is merged into TP2: 0 / 0.0007 / 0.0004.
    p = sized_btc("200")
    assert p.qty == D("0.0011")
    assert p.exit_qtys == (D(0), D("0.0007"), D("0.0004"))
    assert [f"{w:.2f}" for w in p.exit_weights] == ["0.00", "0.64", "0.36"]  # what the card shows
    verdict, allowed = check(
        p, context(equity=D(200), day_start_equity=D(200)), profile("medium"), BTC, slippage_bps=D(5)
    )
    assert (verdict.decision, verdict.qty) == ("allow", D("0.0011"))
    passes(
        verdict,
        "exit_plan",
        "the stop exit of 0.0011 BTC/USD at 32983.50 (the stop 33000 after 5 bps slippage) is 36.28 USD, "
        "at least the venue minimum of 10 USD; exits 0 / 0.0007 / 0.0004 at the targets",
    )
    assert allowed == p


def test_a_shrink_that_leaves_a_stop_exit_under_the_minimum_is_blocked() -> None:
    # Proposed 0.0010 BTC (34.00 USD); on 55 USD the medium cap is 11 USD: shrunk to 11 / 34000 =
    # 0.000323 -> 0.0003 BTC, 10.20 USD at the entry (over the 10 USD minimum), but 9.895 at the stop.
    p = propose(ISSUE_SIGNAL, BTC, D("0.0010"), slippage_bps=D(5), on=ON)
    verdict, shrunk = check(p, context(equity=D(55), day_start_equity=D(55)), profile("medium"), BTC, slippage_bps=D(5))
    assert shrunk.qty == D("0.0003")
    assert shrunk.planned_exit_weights == p.planned_exit_weights  # re-planned from 30/40/30, not from 0/100/0
    blocked_by(
        verdict,
        "exit_plan",
        "the stop exit of 0.0003 BTC/USD at 32983.50 (the stop 33000 after 5 bps slippage) is 9.89 USD, "
        "below the venue minimum of 10 USD",
    )


def test_a_share_lots_reshape_the_plan_without_a_minimum_notional_rule() -> None:
    # 200 shares at 30/40/30: 60 and 80 are under a lot; cumulative rounding gives 0 / 100 / 100.
    # A-shares have no minimum notional, so the gate has no exit rule to apply: the lots are the plan.
    p = proposal(200, "1850", "1900", "1950")
    assert p.exit_qtys == (D(0), D(100), D(100))
    assert p.exit_weights == (D(0), D("0.5"), D("0.5"))
    verdict = judge(p, context())
    assert verdict.decision == "allow"
    assert "exit_plan" not in {c.rule for c in verdict.checks}


# --- shorts: allowed where the venue may short, blocked with the reason elsewhere; both sides count

ETH = replay_instrument("ETH/USDT")  # a perpetual: may be sold short (100% margin, assumed funding)
ETF = replay_instrument("510300.SH")
SHORT_EQUITY = D(100_000)


def short_signal(symbol: str = "ETH/USDT", entry: str = "2000", stop: str = "2100", *tps: str) -> Signal:
    return Signal(
        action=Action.SHORT,
        symbol=symbol,
        entry=D(entry),
        stop=D(stop),
        take_profits=tuple(D(tp) for tp in tps or ("1850", "1750", "1650")),
        horizon_bars=48,
        timeframe="1h",
        confidence=0.8,
    )


def sized_short(signal: Signal, instrument: Instrument) -> Proposal:
    medium = profile("medium")
    return sized_buy(
        signal,
        instrument,
        equity=SHORT_EQUITY,
        available_cash=SHORT_EQUITY,
        risk_per_trade_pct=medium.risk_per_trade_pct,
        max_position_pct=medium.max_position_pct,
        slippage_bps=SLIP,
        on=ON,
    )


def short_context(**changes: Any) -> RiskContext:
    return context(equity=SHORT_EQUITY, day_start_equity=SHORT_EQUITY, **changes)


def test_a_short_on_the_perpetual_passes_every_rule() -> None:
    # 9.6061 ETH (1000 of risk / 104.10 a unit) worth 19212.20: within the 20000 cap
    p = sized_short(short_signal(), ETH)
    verdict = judge(p, short_context(), instrument=ETH)
    assert (verdict.decision, verdict.qty) == ("allow", D("9.6061"))
    passes(verdict, "short_allowed", "ETH/USDT may be sold short on this account")
    passes(verdict, "max_position_value", "value 19212.20 within the cap 20000.00")
    # The assumed +0.01% per 8 h is paid by longs to this short: counted as zero, not as a gain.
    assert p.carry_cost == 0


def test_a_short_paying_a_negative_funding_counts_it_in_its_size_and_costs() -> None:
    # -0.01% per 8 h: shorts pay 0.06% over the 48 h time stop, 1.20 a unit at 2000 on top of the
    # 104.10 at risk: 1000 / 105.30 = 9.4966 ETH worth 18993.20, carrying 18993.20 x 0.0006 = 11.39592.
    eth = ETH.model_copy(update={"funding": FundingTerms(rate_8h=D("-0.0001"), basis="test")})
    p = sized_short(short_signal(), eth)
    verdict = judge(p, short_context(), instrument=eth)
    assert (verdict.decision, verdict.qty) == ("allow", D("9.4966"))
    assert p.carry_cost == D("11.39592") and p.fees_round_trip > p.carry_cost


@pytest.mark.parametrize(
    ("instrument", "signal", "reason"),
    [
        (
            BTC,
            short_signal("BTC/USD", "34000", "35000", "32000"),
            "BTC/USD cannot be sold short: spot crypto is never sold short here (only perpetuals are)",
        ),
        (
            MOUTAI,
            short_signal("600519.SH", "1800", "1850", "1700"),
            "600519.SH cannot be sold short: A-shares and A-share ETFs are long-only on this account "
            "(no securities lending)",
        ),
        (
            ETF,
            short_signal("510300.SH", "5.000", "5.100", "4.800"),
            "510300.SH cannot be sold short: A-shares and A-share ETFs are long-only on this account "
            "(no securities lending)",
        ),
    ],
)
def test_a_short_where_the_venue_cannot_short_is_blocked_with_the_reason(
    instrument: Instrument, signal: Signal, reason: str
) -> None:
    p = propose(signal, instrument, D(100), slippage_bps=SLIP, on=ON)
    blocked_by(judge(p, short_context(), instrument=instrument), "short_allowed", reason)


def test_a_us_equity_short_is_allowed_on_the_margin_account() -> None:
    spy = replay_instrument("SPY")
    p = sized_short(short_signal("SPY", "430", "435", "420", "415"), spy)
    verdict = judge(p, short_context(), instrument=spy)
    assert verdict.decision == "allow"
    passes(verdict, "short_allowed")
    assert p.carry_cost > 0  # the borrow fee over the time stop


def test_a_short_held_counts_against_the_max_position_value_of_another_short() -> None:
    # cap 20% of 100000 = 20000; 5 ETH short held at the 2000 entry = 10000 -> room 10000 -> 5 ETH
    p = sized_short(short_signal(), ETH)
    verdict, shrunk = check(p, short_context(held_qty=D(-5)), profile("medium"), ETH, slippage_bps=SLIP)
    assert (verdict.decision, verdict.qty, shrunk.qty) == ("shrink", D(5), D(5))
    assert outcome(verdict, "max_position_value").detail.endswith("(10000.00 already held): shrunk to 5.00")


def test_a_short_counts_as_a_concurrent_position() -> None:
    held = tuple(f"S{i}" for i in range(5))  # five positions, long or short, on the venue
    p = sized_short(short_signal(), ETH)
    blocked_by(
        judge(p, short_context(open_symbols=held), instrument=ETH),
        "max_concurrent_positions",
        "5 positions open, limit 5",
    )


def test_no_short_against_a_long_and_no_buy_against_a_short() -> None:
    p = sized_short(short_signal(), ETH)
    blocked_by(
        judge(p, short_context(held_qty=D(2)), instrument=ETH),
        "position_side",
        "a long of 2 ETH/USDT is held: it is closed by its own plan, not by a SHORT",
    )
    blocked_by(
        judge(proposal(), context(held_qty=D(-100))),
        "position_side",
        "a short of 100 600519.SH is held: it is closed by its own plan, not by a BUY",
    )
