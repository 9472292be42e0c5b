"""Worker subprocess: `python -m bench.worker --system NAME --dsn DSN ...`.

Runs one worker of the given system and, when it exits (drained, or SIGTERM),
writes the Recorder's JSON to --out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.adapters import get_adapter
from bench.recorder import Recorder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--system", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--drain", action="store_true", help="exit when queue empty")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expected", type=int, default=0, help="job count hint")
    parser.add_argument("--rss-at", type=int, action="append", default=[])
    parser.add_argument("--record-times", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    adapter = get_adapter(args.system)
    recorder = Recorder(
        expected=args.expected,
        rss_at=tuple(args.rss_at),
        record_times=args.record_times,
    )
    try:
        adapter.run_worker(args.dsn, args.concurrency, args.drain, recorder)
    finally:
        recorder.dump(args.out)


if __name__ == "__main__":
    main()
