"""Narrow one (config, precision)'s largest batch from bounds an earlier search left.

``python bench/max_batch_narrow.py CONFIG PRECISION --good B0 --start B1 --limit B2
[--bad B3]``: `gometal_keras.bench.max_batch.search` from `--start` (growing by its
`GROWTH` up to `--limit`, then bisecting to its `RESOLUTION`), with `--good` a batch
already known to train and `--bad` one already known to fail (not probed again, nor any
larger); each probe a fresh process, printed as one JSON line as it finishes (a run cut
short keeps the probes before the cut).
"""

import argparse
import json

from gometal_keras.bench import max_batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("precision")
    parser.add_argument("--good", type=int, required=True)
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--bad", type=int, default=None)
    args = parser.parse_args()

    def trains(batch: int) -> bool:
        if args.bad is not None and batch >= args.bad:
            return False  # an earlier session's probe failed there
        found = max_batch.probe_process(args.config, args.precision, batch, False)
        print(json.dumps({"config": args.config, "precision": args.precision, **found}),
              flush=True)  # fmt: skip
        return bool(found["ok"])

    largest, failed = max_batch.search(trains, args.start, args.limit, args.good)
    print(f"{args.config} {args.precision}: largest batch that trained {largest}; "
          f"smallest that failed {failed}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
