"""Run every benchmark and print the figures (`make bench`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from benchmarks.clv import run as run_clv
from benchmarks.email import run_email
from benchmarks.identity import run_identity
from benchmarks.ingest import run_ingest
from benchmarks.insights import run_insights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events to send (ingest, default 1,000,000) or analyse (insights, 10,000,000)",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000, help="CLV benchmark size")
    parser.add_argument(
        "--personal",
        action="store_true",
        help="ingest: every event carries an email, phone and name (all encrypted)",
    )
    parser.add_argument("--recipients", type=int, default=5_000, help="email benchmark size")
    parser.add_argument(
        "--only", choices=["ingest", "identity", "insights", "clv", "email"], default=None
    )
    args = parser.parse_args()
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "ingest"):
        result = run_ingest(
            events=args.events or 1_000_000, connections=args.connections, personal=args.personal
        )
        _report(
            "ingest through /v1/batch (100-event batches, client on 127.0.0.1)",
            asdict(result),
            out / "ingest.json",
        )
        if result.stored != result.events:
            raise SystemExit(f"stored {result.stored} events but {result.events} acknowledged")
    if args.only in (None, "identity"):
        _report(
            "identity resolution on DuckDB (3 identifiers a person)",
            asdict(run_identity(args.people)),
            out / "identity.json",
        )
    if args.only in (None, "insights"):
        figures = asdict(run_insights(args.events or 10_000_000))
        _report(
            "insights on DuckDB (Ibis) and ClickHouse (chdb, over Parquet): funnel, "
            "weekly retention, sessions + web overview",
            figures,
            out / "insights.json",
        )
        if not (figures["funnel_agrees"] and figures["retention_agrees"] and figures["web_agrees"]):
            raise SystemExit("DuckDB and ClickHouse disagree (see above)")
    if args.only in (None, "clv"):
        _report(
            "CLV: BG/NBD + Gamma-Gamma fit and predictions, ours against lifetimes",
            run_clv(args.customers),
            out / "clv.json",
        )

    if args.only in (None, "email"):
        _report(
            "email campaign through a local SMTP server (consent, render, send log, events)",
            asdict(run_email(args.recipients)),
            out / "email.json",
        )


def _report(title: str, figures: dict, path: Path) -> None:
    print(title + ":")
    for key, value in figures.items():
        print(f"  {key:>18}: {value}")
    path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
