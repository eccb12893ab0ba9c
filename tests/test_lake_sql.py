"""`tradeops sql --lake`: one read-only SELECT over the lake's `bars` view with DuckDB."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from storage.backfill import backfill
from storage.lake import BarsLake
from storage.lake_sql import VIEW_COLUMNS, LakeQueryError, query_lake
from tests.lake_support import FlakySource, fingerprint, utc


@pytest.fixture(autouse=True)
def _data_dir(hermetic: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with a month of crypto hours (two symbols) and a quarter of A-share days."""
    data_dir = tmp_path_factory.mktemp("lake-sql") / "data"
    lake = BarsLake(data_dir / "lake")

    async def fill() -> None:
        crypto = FlakySource("crypto")
        for symbol in ("BTC/USD", "ETH/USDT"):
            await backfill(lake, crypto, symbol, "1h", utc("2021-03-01"), utc("2021-04-01"), clock=crypto.clock)
        cn = FlakySource("cn")
        await backfill(lake, cn, "600519.SH", "1d", utc("2021-01-01"), utc("2021-04-01"), clock=cn.clock)

    asyncio.run(fill())
    return data_dir


@pytest.fixture
def lake(filled: Path, monkeypatch: pytest.MonkeyPatch) -> BarsLake:
    monkeypatch.setenv("TRADEOPS_DATA_DIR", str(filled))
    return BarsLake(filled / "lake")


def test_the_bars_view_has_the_documented_columns_and_types(lake: BarsLake) -> None:
    described = query_lake(lake, "DESCRIBE bars")
    assert [(row[0], row[1]) for row in described.rows] == [
        ("venue", "VARCHAR"),
        ("symbol", "VARCHAR"),
        ("timeframe", "VARCHAR"),
        ("ts", "TIMESTAMP WITH TIME ZONE"),
        ("open", "DOUBLE"),
        ("high", "DOUBLE"),
        ("low", "DOUBLE"),
        ("close", "DOUBLE"),
        ("volume", "DOUBLE"),
    ]
    result = query_lake(lake, "select * from bars where symbol = '600519.SH' order by ts limit 1")
    assert result.columns == VIEW_COLUMNS
    venue, symbol, timeframe, ts, *ohlcv = result.rows[0]
    assert (venue, symbol, timeframe) == ("replay-cn", "600519.SH", "1d")
    assert ts == utc("2021-01-04T01:30")  # the session's open, in UTC
    assert all(isinstance(v, float) for v in ohlcv) and ohlcv[1] >= max(ohlcv[0], ohlcv[3])  # high
    counts = query_lake(lake, "select symbol, timeframe, count(*) from bars group by all order by all")
    assert counts.rows == [("600519.SH", "1d", 58), ("BTC/USD", "1h", 744), ("ETH/USDT", "1h", 744)]


async def test_the_view_equals_what_the_venue_served(lake: BarsLake) -> None:
    source = FlakySource("crypto")
    expected = await source.replay.bars("ETH/USDT", "1h", start=utc("2021-03-01"), end=utc("2021-03-31T23:00"))
    rows = query_lake(lake, "select ts, open, high, low, close, volume from bars where symbol = 'ETH/USDT' order by ts")
    assert [r[0] for r in rows.rows] == list(expected.index)
    assert [r[1:] for r in rows.rows] == [
        tuple(v) for v in expected[["open", "high", "low", "close", "volume"]].itertuples(index=False)
    ]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("COPY (select * from bars) TO '{outside}'", "statement of type COPY"),
        ("COPY bars TO '{part}' (FORMAT parquet)", "statement of type COPY"),
        ("ATTACH '{outside}' AS other", "statement of type ATTACH"),
        ("INSTALL httpfs", "statement of type LOAD"),
        ("LOAD parquet", "statement of type LOAD"),
        ("CREATE TABLE copy AS SELECT * FROM bars", "statement of type CREATE"),
        ("CREATE VIEW v AS SELECT 1", "statement of type CREATE"),
        ("DROP VIEW bars", "statement of type DROP"),
        ("SET enable_external_access = true", "statement of type SET"),
        ("select 1; COPY (select 1) TO '{outside}'", "one statement at a time: the query holds 2"),
        ("select 1; select 2", "one statement at a time"),
        ("select * from read_csv('{outside_csv}')", "file system operations are disabled"),
        ("", "empty query"),
        ("selec 1", "does not parse"),
    ],
)
def test_anything_but_a_read_is_refused_and_the_lake_is_unchanged(
    lake: BarsLake, tmp_path: Path, query: str, says: str
) -> None:
    """Refused by the statement check, or, for a SELECT reaching outside the lake, by DuckDB
    itself: the connection may read the listed parts and nothing else."""
    outside = tmp_path / "out.csv"
    outside_csv = tmp_path / "some.csv"
    outside_csv.write_text("a,b\n1,2\n")
    part = lake.part_files()[0]
    before = fingerprint(lake.root)
    text = query.format(outside=outside, outside_csv=outside_csv, part=part)
    with pytest.raises(LakeQueryError) as refused:
        query_lake(lake, text)
    assert says in str(refused.value)
    assert fingerprint(lake.root) == before
    assert not outside.exists()


def test_a_select_may_read_a_listed_part_directly(lake: BarsLake) -> None:
    part = lake.part_files()[0]
    assert query_lake(lake, f"select count(*) > 0 from read_parquet('{part}')").rows == [(True,)]


def test_an_empty_lake_still_has_the_view(tmp_path: Path) -> None:
    empty = BarsLake(tmp_path / "nothing")
    assert query_lake(empty, "select count(*) from bars").rows == [(0,)]
    assert [r[0] for r in query_lake(empty, "describe bars").rows] == VIEW_COLUMNS


def test_sql_lake_command_prints_a_table_csv_or_json(lake: BarsLake) -> None:
    runner = CliRunner()
    query = "select symbol, ts, close from bars where symbol = 'BTC/USD' order by ts limit 3"
    table = runner.invoke(app, ["sql", "--lake", query])
    assert table.exit_code == 0, table.output
    assert "symbol" in table.output and "BTC/USD" in table.output and "3 row(s)" in table.output
    # Not a terminal: every cell whole, however wide (rich would fold it into 80 columns and cut cells).
    wide_query = "select *, venue || venue || venue as long_column_name from bars limit 2"
    wide = runner.invoke(app, ["sql", "--lake", wide_query])
    assert wide.exit_code == 0, wide.output
    assert "…" not in wide.output and "long_column_name" in wide.output

    as_json = runner.invoke(app, ["sql", "--lake", query, "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert [set(r) for r in rows] == [{"symbol", "ts", "close"}] * 3
    assert rows[0]["ts"] == "2021-03-01T00:00:00+00:00" and isinstance(rows[0]["close"], float)

    as_csv = runner.invoke(app, ["sql", "--lake", query, "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["ts"] for r in parsed] == [r["ts"] for r in rows]
    assert [float(r["close"]) for r in parsed] == [r["close"] for r in rows]

    # --csv and --json give every row; the table the first 100 unless --limit says otherwise.
    everything = runner.invoke(app, ["sql", "--lake", "select * from bars", "--json"])
    assert len(json.loads(everything.stdout)) == 744 * 2 + 58
    limited = runner.invoke(app, ["sql", "--lake", "select * from bars", "--json", "--limit", "5"])
    assert len(json.loads(limited.stdout)) == 5 and "showing the first 5 rows" in limited.stderr
    assert "100 row(s)" in runner.invoke(app, ["sql", "--lake", "select * from bars"]).output


def test_sql_lake_command_refusals_are_clear(lake: BarsLake) -> None:
    runner = CliRunner()
    before = fingerprint(lake.root)
    refused = runner.invoke(app, ["sql", "--lake", "CREATE TABLE t AS SELECT 1"])
    assert refused.exit_code == 2
    assert "refused: the lake is read-only; this is a statement of type CREATE" in refused.output
    both = runner.invoke(app, ["sql", "--lake", "select 1", "--csv", "--json"])
    assert both.exit_code == 2 and "--csv and --json exclude each other" in both.output
    assert fingerprint(lake.root) == before


def test_sql_without_lake_still_reads_the_database(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0  # `sql` reads; it never creates the database
    result = runner.invoke(app, ["sql", "select count(*) as n from orders", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 0}]
    refused = runner.invoke(app, ["sql", "delete from orders", "--json"])
    assert refused.exit_code == 2 and "refused" in refused.output
