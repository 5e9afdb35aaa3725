"""Run every benchmark and print the figures (`make bench`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from benchmarks.ingest import run_ingest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    result = run_ingest(events=args.events, connections=args.connections)
    figures = asdict(result)
    print("ingest through /v1/batch (100-event batches, client on 127.0.0.1):")
    for key, value in figures.items():
        print(f"  {key:>18}: {value}")
    if result.stored != result.events:
        raise SystemExit(f"stored {result.stored} events but {result.events} were acknowledged")
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
