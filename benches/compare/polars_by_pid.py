#!/usr/bin/env python3
"""Per-process totals with polars from a Parquet export of snoop's messages.

  polars_by_pid.py FILE.parquet               print tx/rx bytes and messages per (pid, comm)
  polars_by_pid.py --rewrite IN.parquet OUT   rewrite IN with polars as zstd Parquet; print rows

The query is the same report `snoop analyze --by pid` gives for messages:
bytes and message counts per process and direction.
"""

import sys

import polars as pl


def main():
    if sys.argv[1] == "--rewrite":
        df = pl.read_parquet(sys.argv[2])
        df.write_parquet(sys.argv[3], compression="zstd")
        print(df.height)
        return
    lf = pl.scan_parquet(sys.argv[1])
    cols = lf.collect_schema().names()
    size = "bytes" if "bytes" in cols else "len"
    out = (
        lf.group_by(["pid", "comm"])
        .agg(
            pl.col(size).filter(pl.col("dir") == "tx").sum().alias("tx_bytes"),
            pl.col(size).filter(pl.col("dir") == "rx").sum().alias("rx_bytes"),
            (pl.col("dir") == "tx").sum().alias("tx_msgs"),
            (pl.col("dir") == "rx").sum().alias("rx_msgs"),
        )
        .sort("tx_bytes", descending=True)
        .collect()
    )
    with pl.Config(tbl_rows=50):
        print(out)


if __name__ == "__main__":
    main()
