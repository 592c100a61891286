"""Ingestion: files in, atomic load out; bad input leaves the earlier good data untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from loyal.errors import DataContractError, LoyalError, NotReadyError
from loyal.settings import Settings
from pipelines.cli import main
from pipelines.ingest import MANIFEST_FILE, ingest_folder, print_summary, summarize

pytestmark = pytest.mark.unit

LOYAL = Path(sys.executable).with_name("loyal")


def good_tables() -> dict[str, pd.DataFrame]:
    """Three customers (one closed), three transactions, two products."""
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "signup_date": ["2024-01-01", "2024-01-15", "2024-02-01"],
                "closed_at": ["", "2024-03-10", ""],
                "region": ["north", "south", "north"],
            }
        ),
        "transactions": pd.DataFrame(
            {
                "customer_id": ["c1", "c2", "c3"],
                "ts": ["2024-01-05 10:00:00", "2024-02-05 11:30:00", "2024-04-05 09:15:00"],
                "product_id": ["p1", "p2", "p1"],
                "amount": ["100", "-20", "50"],
            }
        ),
        "products": pd.DataFrame(
            {"product_id": ["p1", "p2"], "name": ["Card", "Loan"], "margin_rate": ["0.2", "0.3"]}
        ),
    }


def write_folder(folder: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv") -> Path:
    """Write tables as `<name>.csv`, `<name>.csv.gz` or `<name>.parquet`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "parquet":
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        else:
            frame.to_csv(folder / f"{name}.{fmt}", index=False)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def loaded(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    """Good data already ingested; returns the contract folder's files."""
    ingest_folder(settings, write_folder(tmp_path / "good", good_tables()))
    return snapshot(settings.paths.contract_dir)


def test_ingest_writes_normalized_parquet_and_a_manifest(
    settings: Settings, tmp_path: Path
) -> None:
    report = ingest_folder(settings, write_folder(tmp_path / "in", good_tables()))
    folder = settings.paths.contract_dir
    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST_FILE,
        "customers.parquet",
        "products.parquet",
        "transactions.parquet",
    ]
    transactions = pd.read_parquet(folder / "transactions.parquet")
    assert str(transactions["ts"].dtype) == "datetime64[ns]"
    assert transactions["amount"].tolist() == [100.0, -20.0, 50.0]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["rows"] == {"customers": 3, "transactions": 3, "products": 2}
    assert manifest["date_range"]["transactions"] == ["2024-01-05T10:00:00", "2024-04-05T09:15:00"]
    assert manifest["snapshot_id"] == report.snapshot_id and len(report.snapshot_id) == 16
    assert manifest["source"] == str((tmp_path / "in").resolve())
    assert manifest["preset"] is None and manifest["ingested_at"]
    assert report.rows == manifest["rows"]
    assert [p.name for p in folder.parent.iterdir()] == ["contract"]  # no staging left over


def test_snapshot_id_depends_on_content_not_format(settings: Settings, tmp_path: Path) -> None:
    tables = good_tables()
    csv_id = ingest_folder(settings, write_folder(tmp_path / "csv", tables)).snapshot_id
    gz_id = ingest_folder(settings, write_folder(tmp_path / "gz", tables, "csv.gz")).snapshot_id
    parquet = write_folder(tmp_path / "pq", tables, "parquet")
    assert ingest_folder(settings, parquet).snapshot_id == csv_id == gz_id
    tables["transactions"].loc[0, "amount"] = "101"
    changed = write_folder(tmp_path / "changed", tables)
    assert ingest_folder(settings, changed).snapshot_id != csv_id


def longer_tables(rows: int = 50) -> dict[str, pd.DataFrame]:
    """The good tables with a longer transaction log whose channel is blank at first."""
    tables = good_tables()
    stamps = pd.date_range("2024-02-02", periods=rows, freq="6h").astype(str)
    tables["transactions"] = pd.DataFrame(
        {
            "customer_id": [f"c{1 + i % 3}" for i in range(rows)],
            "ts": stamps,
            "product_id": ["p1" if i % 2 else "p2" for i in range(rows)],
            "amount": [str(10 + i) for i in range(rows)],
            "channel": ["" if i < 20 else "web" for i in range(rows)],
        }
    )
    return tables


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunked_ingest_writes_what_a_whole_table_ingest_writes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    folder = write_folder(tmp_path / "in", longer_tables(), fmt)
    whole = ingest_folder(settings, folder)
    expected = {
        name: pd.read_parquet(settings.paths.contract_dir / f"{name}.parquet")
        for name in whole.rows
    }
    monkeypatch.setattr("pipelines.ingest.CHUNK_ROWS", 7)
    chunked = ingest_folder(settings, folder)
    assert chunked.snapshot_id == whole.snapshot_id and chunked.rows == whole.rows
    assert chunked.manifest["date_range"] == whole.manifest["date_range"]
    for name, frame in expected.items():
        written = pd.read_parquet(settings.paths.contract_dir / f"{name}.parquet")
        pd.testing.assert_frame_equal(written, frame)
    assert pq.ParquetFile(settings.paths.contract_dir / "transactions.parquet").num_row_groups > 1


def test_chunked_ingest_names_the_bad_row_of_a_later_chunk(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = longer_tables()
    tables["transactions"].loc[33, "customer_id"] = "stranger"
    monkeypatch.setattr("pipelines.ingest.CHUNK_ROWS", 7)
    with pytest.raises(DataContractError, match=r"unknown customer_id.*row.*\b34\b"):
        ingest_folder(settings, write_folder(tmp_path / "in", tables, "parquet"))


def test_a_customer_twice_in_one_campaign_is_refused_across_chunks(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = longer_tables()
    members = [f"c{1 + i}" for i in range(3)] * 6  # 18 rows: three customers a campaign
    tables["campaigns"] = pd.DataFrame(
        {
            "campaign_id": [f"k{i // 3}" for i in range(18)],
            "customer_id": members,
            "ts": "2024-03-01",
            "treated": ["true", "false"] * 9,
        }
    )
    good = write_folder(tmp_path / "good", tables, "parquet")
    monkeypatch.setattr("pipelines.ingest.CHUNK_ROWS", 7)
    ingest_folder(settings, good)
    before = snapshot(settings.paths.contract_dir)
    tables["campaigns"].loc[15, "campaign_id"] = "k0"  # c1 in k0 again, held out this time
    with pytest.raises(DataContractError) as refused:
        ingest_folder(settings, write_folder(tmp_path / "bad", tables, "parquet"))
    message = str(refused.value)
    assert (
        "table 'campaigns'" in message and "each (campaign_id, customer_id) at most once" in message
    )
    assert "'k0', 'c1'" in message and "rows: 1, 16" in message
    assert snapshot(settings.paths.contract_dir) == before  # nothing half-written


def test_unknown_columns_and_files_are_kept_or_ignored_with_warnings(
    settings: Settings, tmp_path: Path
) -> None:
    tables = good_tables()
    tables["customers"]["favourite_colour"] = ["red", "blue", "green"]
    folder = write_folder(tmp_path / "in", tables)
    (folder / "notes.csv").write_text("a,b\n1,2\n")
    (folder / "README.md").write_text("not a table")
    report = ingest_folder(settings, folder)
    customers = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")
    assert customers["favourite_colour"].tolist() == ["red", "blue", "green"]
    assert any("favourite_colour" in w and "customers" in w for w in report.warnings)
    assert any("notes.csv" in w for w in report.warnings)


def _set(table: str, column: str, row: int, value: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        file = folder / f"{table}.csv"
        frame = pd.read_csv(file, dtype=str)
        frame.loc[row, column] = value
        frame.to_csv(file, index=False)

    return corrupt


def _drop_column(table: str, column: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        file = folder / f"{table}.csv"
        pd.read_csv(file, dtype=str).drop(columns=column).to_csv(file, index=False)

    return corrupt


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        table = name.split(".")[0]
        for old in folder.glob(f"{table}.*"):
            old.unlink()
        (folder / name).write_bytes(content)

    return corrupt


def _remove(table: str) -> Callable[[Path], None]:
    return lambda folder: (folder / f"{table}.csv").unlink()


def _duplicate(table: str) -> Callable[[Path], None]:
    return lambda folder: pd.read_csv(folder / f"{table}.csv").to_parquet(
        folder / f"{table}.parquet"
    )


BAD_FOLDERS = {
    # case: (corruption, table, column or None, words the message must hold)
    "missing required column": (
        _drop_column("transactions", "amount"),
        "transactions",
        "amount",
        ["missing required column"],
    ),
    "wrong type": (
        _set("transactions", "amount", 1, "abc"),
        "transactions",
        "amount",
        ["expected a number", "'abc'", "rows: 2"],
    ),
    "unparseable date": (
        _set("customers", "signup_date", 2, "2024-13-45"),
        "customers",
        "signup_date",
        ["unparseable date", "rows: 3"],
    ),
    "NaN amount": (
        _set("transactions", "amount", 0, ""),
        "transactions",
        "amount",
        ["missing value", "rows: 1"],
    ),
    "duplicate customer ids": (
        _set("customers", "customer_id", 1, "c1"),
        "customers",
        "customer_id",
        ["duplicate", "rows: 1, 2"],
    ),
    "transactions for unknown customers": (
        _set("transactions", "customer_id", 2, "ghost"),
        "transactions",
        "customer_id",
        ["not in table 'customers'", "'ghost'", "rows: 3"],
    ),
    "date in the future": (
        _set("transactions", "ts", 1, "2199-01-01"),
        "transactions",
        "ts",
        ["in the future", "rows: 2"],
    ),
    "empty file (header only)": (
        _write("products.csv", b"product_id,name,margin_rate\n"),
        "products",
        None,
        ["empty table"],
    ),
    "empty file (zero bytes)": (
        _write("products.csv", b""),
        "products",
        None,
        ["empty file", "products.csv"],
    ),
    "unreadable parquet": (
        _write("customers.parquet", b"this is not parquet"),
        "customers",
        None,
        ["unreadable file", "customers.parquet"],
    ),
    "unreadable gzip": (
        _write("transactions.csv.gz", b"not gzip at all"),
        "transactions",
        None,
        ["unreadable file", "transactions.csv.gz"],
    ),
    "undecodable text": (
        _write("products.csv", "product_id,name\np1,Caf\xe9\n".encode("latin-1")),
        "products",
        None,
        ["unreadable file", "products.csv"],
    ),
    "missing required table": (
        _remove("products"),
        "products",
        None,
        ["missing required table"],
    ),
    "two files for one table": (
        _duplicate("products"),
        "products",
        None,
        ["two files", "products.csv", "products.parquet"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_input_is_rejected_and_earlier_data_kept(
    case: str, settings: Settings, tmp_path: Path, loaded: dict[str, bytes]
) -> None:
    corrupt, table, column, words = BAD_FOLDERS[case]
    bad = write_folder(tmp_path / "bad", good_tables())
    corrupt(bad)
    with pytest.raises(DataContractError) as caught:
        ingest_folder(settings, bad)
    message = str(caught.value)
    assert message.startswith(f"table '{table}'")
    if column:
        assert f"column '{column}'" in message
    for word in words:
        assert word in message
    assert snapshot(settings.paths.contract_dir) == loaded
    assert [p.name for p in settings.paths.data_dir.iterdir()] == ["contract"]


def test_failed_write_keeps_earlier_data(
    settings: Settings,
    tmp_path: Path,
    loaded: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables = good_tables()
    tables["transactions"].loc[0, "amount"] = "999"
    folder = write_folder(tmp_path / "new", tables)
    calls = []

    def failing_write(self: pq.ParquetWriter, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        original(self, *args, **kwargs)

    original = pq.ParquetWriter.write_table
    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write)
    with pytest.raises(LoyalError, match="disk full"):
        ingest_folder(settings, folder)
    assert snapshot(settings.paths.contract_dir) == loaded


def test_missing_folder_and_empty_folder_are_explained(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(LoyalError, match="no such folder"):
        ingest_folder(settings, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoyalError, match=r"no table files .*--preset"):
        ingest_folder(settings, tmp_path / "empty")


def test_summary_before_any_ingest_says_what_to_run(settings: Settings) -> None:
    with pytest.raises(NotReadyError, match="loyal ingest"):
        print_summary(settings)


def test_summary_reports_rows_dates_churn_and_top_products(
    settings: Settings, loaded: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = print_summary(settings)
    out = capsys.readouterr().out
    assert summary.rows == {"customers": 3, "transactions": 3, "products": 2}
    assert summary.customers == 3
    assert summary.closed_share == pytest.approx(1 / 3)
    assert summary.top_products["product_id"].tolist() == ["p1", "p2"]
    assert summary.top_products["revenue"].tolist() == [150.0, -20.0]
    for text in ("transactions rows", "2024-01-05 to 2024-04-05", "33.3%", "Card", "150"):
        assert text in out


def test_monthly_closure_rate_by_hand() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": pd.to_datetime(["2023-12-01"] * 4),
            "closed_at": pd.to_datetime(pd.Series([None, "2024-01-20", "2024-02-10", None])),
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["a", "d"],
            "ts": pd.to_datetime(["2024-01-01", "2024-02-28"]),
            "product_id": ["p", "p"],
            "amount": [1.0, 2.0],
        }
    )
    summary = summarize({"customers": customers, "transactions": transactions}, horizon_days=30)
    # January: 1 of 4 open customers closes; February: 1 of 3.
    assert summary.monthly_closure_rate == pytest.approx((1 / 4 + 1 / 3) / 2)
    assert summary.closed_share == 0.5
    assert summary.inactive_share == 0.5  # a last bought on Jan 1, more than 30 days before the end


def test_tiny_online_retail_log_through_the_preset(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "retail"
    folder.mkdir()
    log = pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "C536379", "536380", "536381"],
            "StockCode": ["85123A", "POST", "85123A", "22423", "22423"],
            "Description": ["HEART HOLDER", "POSTAGE", "HEART HOLDER", "CAKESTAND", "CAKESTAND"],
            "Quantity": [6, 1, -2, 1, 3],
            "InvoiceDate": [
                "2010-12-01 08:26:00",
                "2010-12-01 08:26:00",
                "2010-12-02 09:00:00",
                "2010-12-03 10:00:00",
                "2010-12-04 11:00:00",
            ],
            "UnitPrice": [2.55, 18.0, 2.55, 12.75, 12.75],
            "CustomerID": [17850.0, 17850.0, 17850.0, None, 13047.0],
            "Country": ["United Kingdom"] * 4 + ["France"],
        }
    )
    log.to_csv(folder / "online_retail.csv.gz", index=False)
    report = ingest_folder(settings, folder, preset="online-retail")
    contract = settings.paths.contract_dir
    transactions = pd.read_parquet(contract / "transactions.parquet")
    customers = pd.read_parquet(contract / "customers.parquet")
    assert report.rows == {"customers": 2, "transactions": 3, "products": 2}
    assert report.dropped == {
        "no CustomerID (guest checkout)": 1,
        "non-product StockCode (postage, fees, manual, discount, ...)": 1,
    }
    assert transactions["amount"].tolist() == [15.3, -5.1, 38.25]  # cancellation = refund
    assert customers.set_index("customer_id")["region"].to_dict() == {
        "13047": "France",
        "17850": "United Kingdom",
    }
    assert str(customers["signup_date"].min().date()) == "2010-12-01"


def test_tiny_cdnow_log_through_the_preset(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "cdnow"
    folder.mkdir()
    (folder / "CDNOW_master.txt").write_bytes(
        b" customer_id  date number_of_cds  dollar_value\r\n"
        b" 00001 19970101  1   11.77\r\n"
        b" 00002 19970112  1   12.00\r\n"
        b" 00002 19970112  5   77.00\r\n"
        b" 00002 19970302  2    0.00\r\n"
    )
    report = ingest_folder(settings, folder, preset="cdnow")
    customers = pd.read_parquet(settings.paths.contract_dir / "customers.parquet")
    assert report.rows == {"customers": 2, "transactions": 4, "products": 1}
    assert customers["customer_id"].tolist() == ["1", "2"]  # ids as numbers: no zero padding
    assert customers["signup_date"].dt.strftime("%Y-%m-%d").tolist() == ["1997-01-01", "1997-01-12"]


def test_cdnow_sample_log_through_its_preset(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "cdnow"
    folder.mkdir()
    (folder / "CDNOW_sample.txt").write_bytes(
        b" 00004 0001 19970101  2   29.33\r\n"
        b" 00004 0001 19970118  2   29.73\r\n"
        b" 00018 0002 19970102  2   26.48\r\n"
    )
    report = ingest_folder(settings, folder, preset="cdnow-sample")
    transactions = pd.read_parquet(settings.paths.contract_dir / "transactions.parquet")
    assert report.rows == {"customers": 2, "transactions": 3, "products": 1}
    assert transactions["customer_id"].tolist() == ["4", "4", "18"]  # the master ids, unpadded
    assert transactions["amount"].sum() == pytest.approx(85.54)


def test_unknown_preset_and_missing_source_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(
        LoyalError, match=r"unknown preset 'nope'.*online-retail, cdnow, cdnow-sample"
    ):
        ingest_folder(settings, tmp_path, preset="nope")
    with pytest.raises(LoyalError, match=r"CDNOW_master\.txt"):
        ingest_folder(settings, tmp_path, preset="cdnow")


def test_cli_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    tables = good_tables()
    tables["transactions"].loc[1, "amount"] = "abc"
    bad = write_folder(tmp_path / "bad", tables)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYAL_")}
    env |= {"LOYAL_HOME": str(tmp_path), "COLUMNS": "80"}
    done = subprocess.run(
        [str(LOYAL), "ingest", str(bad)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, lines
    assert "table 'transactions', column 'amount'" in lines[0]
    assert not (tmp_path / "data" / "contract").exists()


def test_cli_summary_before_ingest_exits_non_zero(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["loyal", "summary"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == NotReadyError.exit_code
    err = capsys.readouterr().err
    assert "error:" in err and "loyal ingest" in err and "Traceback" not in err


def test_interrupted_swap_restores_the_last_good_tables(tmp_path: Path) -> None:
    from features.tables_io import recover_folder, replace_folder

    target = tmp_path / "contract"
    replace_folder(target, {"a.parquet": pd.DataFrame({"x": [1]})})
    target.rename(tmp_path / ".contract.previous")  # the process died between the two renames
    recover_folder(target)
    assert pd.read_parquet(target / "a.parquet")["x"].tolist() == [1]
    assert not (tmp_path / ".contract.previous").exists()


# --- dates are read, never guessed (issue 16, point 3) -------------------------------------------


def _with_signups(*dates: str) -> dict[str, pd.DataFrame]:
    tables = good_tables()
    tables["customers"]["signup_date"] = list(dates)
    return tables


@pytest.mark.parametrize(
    "dates",
    [
        ("01/03/2024", "02/04/2024", "03/05/2024"),  # month-first and day-first both fit
        ("01.03.2024", "05.06.2024", "12.11.2023"),
    ],
)
def test_ambiguous_day_month_order_is_rejected_naming_table_column_and_examples(
    settings: Settings, tmp_path: Path, dates: tuple[str, ...]
) -> None:
    """The attack: a file starting `01/03/2024` was read month-first for every row."""
    folder = write_folder(tmp_path / "uk", _with_signups(*dates))
    with pytest.raises(DataContractError) as error:
        ingest_folder(settings, folder)
    message = str(error.value)
    assert "table 'customers', column 'signup_date'" in message
    assert "day/month order cannot be decided" in message
    assert dates[0] in message and "--date-format" in message
    assert not settings.paths.contract_dir.exists()


def test_day_first_dates_need_their_format_named(settings: Settings, tmp_path: Path) -> None:
    """The attack: a file starting `13/02/2024` was read day-first, `01/03/2024` month-first."""
    folder = write_folder(tmp_path / "eu", _with_signups("13/02/2024", "01/03/2024", "02/01/2024"))
    with pytest.raises(DataContractError, match=r"not in ISO 8601.*e\.g\. %d/%m/%Y"):
        ingest_folder(settings, folder)
    report = ingest_folder(settings, folder, date_format="%d/%m/%Y")
    customers = pd.read_parquet(report.contract_dir / "customers.parquet")
    assert customers["signup_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-02-13",
        "2024-03-01",
        "2024-01-02",
    ]


def test_the_same_file_reads_the_same_whatever_its_first_row(
    settings: Settings, tmp_path: Path
) -> None:
    first = ingest_folder(
        settings,
        write_folder(tmp_path / "a", _with_signups("01/03/2024", "13/02/2024", "02/01/2024")),
        date_format="%d/%m/%Y",
    )
    a = pd.read_parquet(first.contract_dir / "customers.parquet")["signup_date"].tolist()
    second = ingest_folder(
        settings,
        write_folder(tmp_path / "b", _with_signups("13/02/2024", "01/03/2024", "02/01/2024")),
        date_format="%d/%m/%Y",
    )
    b = pd.read_parquet(second.contract_dir / "customers.parquet")["signup_date"].tolist()
    assert a[0] == b[1] and a[1] == b[0] and str(a[0].date()) == "2024-03-01"


def test_a_date_not_fitting_the_named_format_is_unparseable(
    settings: Settings, tmp_path: Path
) -> None:
    folder = write_folder(
        tmp_path / "mixed", _with_signups("13/02/2024", "2024-03-01", "13/13/2024")
    )
    with pytest.raises(DataContractError, match=r"signup_date.*unparseable date.*13/13/2024"):
        ingest_folder(settings, folder, date_format="%d/%m/%Y")


def test_iso_dates_with_offsets_are_read_without_a_format(
    settings: Settings, tmp_path: Path
) -> None:
    tables = good_tables()
    tables["transactions"]["ts"] = [
        "2024-01-05T10:00:00+02:00",
        "2024-02-05T11:30:00Z",
        "2024-04-05 09:15:00",
    ]
    report = ingest_folder(settings, write_folder(tmp_path / "iso", tables))
    ts = pd.read_parquet(report.contract_dir / "transactions.parquet")["ts"]
    assert ts.dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-01-05 08:00",
        "2024-02-05 11:30",
        "2024-04-05 09:15",
    ]


def test_cli_takes_the_date_format(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "eu", _with_signups("13/02/2024", "01/03/2024", "02/01/2024"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYAL_")}
    env |= {"LOYAL_HOME": str(tmp_path), "COLUMNS": "200"}
    done = subprocess.run(
        [str(LOYAL), "ingest", str(folder), "--date-format", "%d/%m/%Y"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    customers = pd.read_parquet(tmp_path / "data" / "contract" / "customers.parquet")
    assert str(customers["signup_date"].iloc[0].date()) == "2024-02-13"
