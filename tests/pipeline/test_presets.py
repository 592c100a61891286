"""The public datasets ingest through their presets with the row counts their SOURCE.md gives."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from loyal.settings import Settings
from pipelines.ingest import ingest_folder, print_summary

pytestmark = pytest.mark.pipeline

SHARED_DATA = Path(
    os.environ.get("LOYAL_PUBLIC_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


def _dataset(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"public dataset not found at {folder} (set LOYAL_PUBLIC_DATA)")
    return folder


def _contract(settings: Settings, table: str) -> pd.DataFrame:
    return pd.read_parquet(settings.paths.contract_dir / f"{table}.parquet")


def test_online_retail(settings: Settings) -> None:
    report = ingest_folder(settings, _dataset("online_retail"), preset="online-retail")
    # SOURCE.md: 541,909 rows, of which 406,829 have a CustomerID, from 4,372 customers.
    assert report.dropped["no CustomerID (guest checkout)"] == 541_909 - 406_829
    assert report.rows["customers"] == 4_372
    # SOURCE.md names the non-product codes (POST, DOT, M, D, C2, S, BANK CHARGES, AMAZONFEE,
    # CRUK, gift vouchers, ...): among rows with a CustomerID they are 1,920 lines (POST 1,196,
    # M 465, C2 134, D 77, CRUK 16, DOT 16, BANK CHARGES 12, PADS 4), leaving 404,909 product
    # lines of 3,676 distinct product codes.
    non_product = report.dropped["non-product StockCode (postage, fees, manual, discount, ...)"]
    assert non_product == 1_920
    assert report.rows["transactions"] == 406_829 - non_product == 404_909
    assert report.rows["products"] == 3_676
    transactions = _contract(settings, "transactions")
    # SOURCE.md: InvoiceDate runs from 2010-12-01 08:26 to 2011-12-09 12:50.
    assert transactions["ts"].min() == pd.Timestamp("2010-12-01 08:26")
    assert transactions["ts"].max() == pd.Timestamp("2011-12-09 12:50")
    assert (transactions["amount"] < 0).sum() > 8_000  # cancellations kept as refunds
    assert transactions["customer_id"].str.fullmatch(r"\d{5}").all()
    assert report.warnings == []


def test_cdnow(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    report = ingest_folder(settings, _dataset("cdnow"), preset="cdnow")
    # SOURCE.md: 69,659 purchase records of 23,570 customers, 1997-01-01 to 1998-06-30,
    # total dollar_value 2,500,315.63, 80 rows of 0 USD.
    assert report.rows == {"customers": 23_570, "transactions": 69_659, "products": 1}
    assert report.dropped == {}
    transactions = _contract(settings, "transactions")
    assert transactions["amount"].sum() == pytest.approx(2_500_315.63, abs=0.01)
    assert (transactions["amount"] == 0).sum() == 80
    assert transactions["ts"].min() == pd.Timestamp("1997-01-01")
    assert transactions["ts"].max() == pd.Timestamp("1998-06-30")
    customers = _contract(settings, "customers")
    # The cohort made its first purchase in the first quarter of 1997.
    assert customers["signup_date"].max() < pd.Timestamp("1997-04-01")
    summary = print_summary(settings)
    assert summary.top_products["product_id"].tolist() == ["cd"]
    assert "23,570" in capsys.readouterr().out
