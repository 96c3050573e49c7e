"""An analyst's side of a replay: runs the DuckDB questions of the user
guide (docs/replay.md, the ```sql blocks tagged `-- question: …`) as they
are written there against a replay's Parquet files, reads the same files
with pandas/pyarrow, and prints one JSON document of what it found, for
e2e/tests/replay_parquet.rs to compare with the replay's own report.

    python analyst.py GUIDE.md REPLAY_DIR EXPORT.parquet
"""

import json
import re
import sys

import duckdb
import pandas as pd
import pyarrow.parquet as pq


def questions(guide: str) -> dict:
    blocks = re.findall(r"```sql\n(.*?)```", open(guide).read(), re.S)
    out = {}
    for b in blocks:
        m = re.match(r"-- question: (\S+)\n", b)
        if m:
            out[m.group(1)] = b[m.end():]
    return out


def main() -> None:
    guide, replay, export = sys.argv[1:4]
    con = duckdb.connect()
    answers = {}
    for name, sql in questions(guide).items():
        sql = sql.replace("'replay-out/", f"'{replay}/")
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        answers[name] = [
            {c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(cols, row)}
            for row in cur.fetchall()
        ]
    visits = pd.read_parquet(f"{replay}/visits.parquet")
    events = pq.read_table(f"{replay}/events.parquet")
    exported = pd.read_parquet(export)
    print(json.dumps({
        "answers": answers,
        "pandas": {
            "visits": len(visits),
            "visit_columns": list(visits.columns),
            "start_dtype": str(visits["start"].dtype),
        },
        "events": {
            "rows": events.num_rows,
            "kinds": events.column("kind").to_pylist(),
            "outcomes": sorted(set(events.column("outcome").to_pylist())),
        },
        "export": {
            "rows": len(exported),
            "kinds": sorted(exported["kind"].unique().tolist()),
            "streams": sorted(exported["stream"].unique().tolist()),
        },
    }, default=str))


if __name__ == "__main__":
    main()
