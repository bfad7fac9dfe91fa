"""TPC-H side by side: bkg-db and PostgreSQL over pgwire, DuckDB and DataFusion in process.

Run by benches/compare.sh (`make bench-compare SF=1`), which starts the servers and passes their
libpq connection strings:

    bench.py --sf 1 --data DIR --bkg "host=... port=..." [--pg "host=..."] [--runs 3]
             [--pg-timeout-s 300] [--json OUT] [--markdown OUT]

Loads the generated CSV files into each server with COPY FROM STDIN (timed), then runs the 22
queries in benches/tpch/queries: one cold run, then the median of --runs hot runs. Every bkg-db
answer is checked against DuckDB's (numbers to 0.01 or one part in 10^9, char padding ignored);
a mismatch or an error is a failure and makes the exit status 1. DataFusion's answers are
checked the same way and reported. Never asserts timings.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]
QUERIES = sorted((HERE / "queries").glob("q*.sql"))


def norm(v):
    """One answer cell in a form all engines agree on."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        return float(v)
    if isinstance(v, str):
        return v.rstrip()
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v)


def same(a: list[tuple], b: list[tuple]) -> str | None:
    """None if the answers agree, else what differs."""
    if len(a) != len(b):
        return f"{len(a)} rows, expected {len(b)}"
    for i, (ra, rb) in enumerate(zip(a, b)):
        if len(ra) != len(rb):
            return f"row {i}: {len(ra)} columns, expected {len(rb)}"
        for j, (x, y) in enumerate(zip(ra, rb)):
            x, y = norm(x), norm(y)
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=0.01):
                    return f"row {i} column {j}: {x!r}, expected {y!r}"
            elif x != y:
                return f"row {i} column {j}: {x!r}, expected {y!r}"
    return None


class Pgwire:
    def __init__(self, name: str, dsn: str, timeout_s: float | None):
        self.name = name
        self.conn = psycopg.connect(dsn, autocommit=True)
        if timeout_s:
            self.conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        self.version = self.conn.execute("SELECT version()").fetchone()[0]

    def load(self, data: Path) -> dict:
        c = self.conn
        for t in reversed(TABLES):
            c.execute(f"DROP TABLE IF EXISTS {t}")
        c.execute((HERE / "schema.sql").read_text())
        times, rows = {}, {}
        for t in TABLES:
            start = time.perf_counter()
            with c.cursor() as cur:
                with cur.copy(f"COPY {t} FROM STDIN WITH (FORMAT csv, HEADER true)") as cp, open(data / f"{t}.csv", "rb") as f:
                    while block := f.read(1 << 20):
                        cp.write(block)
                rows[t] = cur.rowcount
            times[t] = time.perf_counter() - start
        start = time.perf_counter()
        self.after_load()
        return {"seconds": times, "rows": rows, "after_load_s": time.perf_counter() - start}

    def after_load(self) -> None:
        self.conn.execute("ANALYZE" if self.name == "PostgreSQL" else "CHECKPOINT")

    def run(self, sql: str) -> list[tuple]:
        return self.conn.execute(sql).fetchall()


class DuckDb:
    name = "DuckDB"

    def __init__(self, data: Path):
        import duckdb

        self.conn = duckdb.connect()
        self.version = f"DuckDB {duckdb.__version__}"
        for t in TABLES:
            self.conn.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data / (t + '.parquet')}')")

    def run(self, sql: str) -> list[tuple]:
        return self.conn.execute(sql).fetchall()


class DataFusion:
    name = "DataFusion"

    def __init__(self, data: Path):
        import datafusion

        self.ctx = datafusion.SessionContext()
        self.version = f"DataFusion (Python) {datafusion.__version__}"
        for t in TABLES:
            self.ctx.register_parquet(t, str(data / f"{t}.parquet"))

    def run(self, sql: str) -> list[tuple]:
        table = self.ctx.sql(sql).to_arrow_table()
        return [tuple(r.values()) for r in table.to_pylist()]


def timed_runs(engine, sql: str, hot: int) -> dict:
    """One cold run, then `hot` runs; the answer of the first."""
    out: dict = {"cold": None, "hot": [], "answer": None, "error": None}
    try:
        start = time.perf_counter()
        out["answer"] = engine.run(sql)
        out["cold"] = time.perf_counter() - start
        for _ in range(hot):
            start = time.perf_counter()
            engine.run(sql)
            out["hot"].append(time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a failing query is a result, reported below
        out["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return out


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sf", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--bkg", required=True)
    ap.add_argument("--pg")
    ap.add_argument("--pg-name", default="PostgreSQL", help="label of the --pg server (benches/ab.sh puts a second bkg-db there)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-timeout-s", type=float, default=300)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()

    bkg = Pgwire("bkg-db", args.bkg, None)
    pg = Pgwire(args.pg_name, args.pg, args.pg_timeout_s) if args.pg else None
    duck = DuckDb(args.data)
    fusion = DataFusion(args.data)
    loads = {"bkg-db": bkg.load(args.data)}
    if pg:
        loads[pg.name] = pg.load(args.data)
    for name, load in loads.items():
        li = load["rows"]["lineitem"] / load["seconds"]["lineitem"]
        total = sum(load["rows"].values()) / sum(load["seconds"].values())
        print(f"load {name}: lineitem {li:,.0f} rows/s, all tables {total:,.0f} rows/s, then {load['after_load_s']:.1f} s", file=sys.stderr)

    engines = [bkg] + ([pg] if pg else []) + [duck, fusion]
    results: dict[str, dict[str, dict]] = {e.name: {} for e in engines}
    failures = []
    for q in QUERIES:
        sql = q.read_text()
        for e in engines:
            r = timed_runs(e, sql, args.runs)
            results[e.name][q.stem] = r
        ref = results["DuckDB"][q.stem]
        if ref["error"]:
            failures.append(f"{q.stem}: DuckDB failed: {ref['error']}")
        for name in ("bkg-db", "DataFusion"):
            r = results[name][q.stem]
            if r["error"]:
                r["check"] = r["error"]
            elif not ref["error"]:
                r["check"] = same(r["answer"], ref["answer"])
            if name == "bkg-db" and r.get("check"):
                failures.append(f"{q.stem}: bkg-db {r['check']}")
        line = "  ".join(f"{e.name} {fmt_s(statistics.median(results[e.name][q.stem]['hot']) if results[e.name][q.stem]['hot'] else None)}" for e in engines)
        print(f"{q.stem}: {line}  {'OK' if not results['bkg-db'][q.stem].get('check') else 'FAIL ' + results['bkg-db'][q.stem]['check']}", file=sys.stderr)

    report = render(args, engines, results, loads)
    if args.markdown:
        args.markdown.write_text(report)
    print(report)
    if args.json:
        for per in results.values():
            for r in per.values():
                r.pop("answer", None)
        args.json.write_text(json.dumps({"sf": args.sf, "loads": loads, "results": results}, indent=1, default=str))
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


def render(args, engines, results, loads) -> str:
    names = [e.name for e in engines]
    lines = [
        f"TPC-H SF {args.sf}, {datetime.date.today().isoformat()}, {platform.machine()} with {_cpus()} CPUs, "
        f"{_mem_gib():.0f} GiB; one cold run then the median of {args.runs} hot runs, seconds.",
        "",
        "Versions: " + "; ".join(f"{e.name}: {e.version.split(' on ')[0]}" for e in engines) + ".",
        "",
        "| Query | " + " | ".join(f"{n} cold | {n} hot" for n in names) + " | bkg-db answer |",
        "|---|" + "---|---|" * len(names) + "---|",
    ]
    hot_of = lambda n, q: statistics.median(results[n][q]["hot"]) if results[n][q]["hot"] else None  # noqa: E731
    for q in QUERIES:
        cells = []
        for n in names:
            r = results[n][q.stem]
            if r["error"]:
                cells += ["error", "error"] if "timeout" not in r["error"] and "canceling" not in r["error"] else [f">{args.pg_timeout_s:.0f}", "-"]
            else:
                cells += [fmt_s(r["cold"]), fmt_s(hot_of(n, q.stem))]
        check = results["bkg-db"][q.stem].get("check")
        lines.append(f"| {q.stem.upper()} | " + " | ".join(cells) + f" | {'ok' if not check else 'FAIL: ' + check} |")
    totals = {}
    for n in names:
        hots = [hot_of(n, q.stem) for q in QUERIES]
        totals[n] = None if any(h is None for h in hots) else sum(hots)
    lines.append("| Total (hot) | " + " | ".join(f" | {fmt_s(totals[n])}" for n in names) + " | |")
    lines.append("")
    ok = sum(1 for q in QUERIES if not results["bkg-db"][q.stem].get("check"))
    lines.append(f"bkg-db answers matching DuckDB's: {ok} of {len(QUERIES)}.")
    lines.append("")
    lines.append("| bkg-db against | geometric mean of per-query hot ratios (other / bkg-db; > 1 = bkg-db faster) | total hot time ratio | queries compared |")
    lines.append("|---|---|---|---|")
    for n in names[1:]:
        pairs = [(hot_of(n, q.stem), hot_of("bkg-db", q.stem)) for q in QUERIES]
        pairs = [(o, b) for o, b in pairs if o and b]
        total = f"{sum(o for o, _ in pairs) / sum(b for _, b in pairs):.2f}" if pairs else "-"
        lines.append(f"| {n} | {geomean([o / b for o, b in pairs]):.2f} | {total} | {len(pairs)} |")
    # Queries PostgreSQL did not finish count at its statement timeout: a lower bound.
    if "PostgreSQL" in names and totals["bkg-db"]:
        pg_total, timeouts = 0.0, 0
        for q in QUERIES:
            h = hot_of("PostgreSQL", q.stem)
            if h is None:
                timeouts += 1
                h = args.pg_timeout_s
            pg_total += h
        if timeouts:
            lines.append("")
            lines.append(
                f"PostgreSQL's total counting its {timeouts} unfinished queries at the {args.pg_timeout_s:.0f} s timeout: "
                f"at least {pg_total:.1f} s, at least {pg_total / totals['bkg-db']:.0f}x bkg-db's total."
            )
    lines.append("")
    lines.append("| Load (COPY FROM STDIN, CSV) | lineitem rows/s | all tables rows/s | after the load |")
    lines.append("|---|---|---|---|")
    for name, load in loads.items():
        li = load["rows"]["lineitem"] / load["seconds"]["lineitem"]
        total = sum(load["rows"].values()) / sum(load["seconds"].values())
        what = "ANALYZE" if name == "PostgreSQL" else "CHECKPOINT"
        lines.append(f"| {name} | {li:,.0f} | {total:,.0f} | {what} {load['after_load_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def _cpus() -> int:
    return os.cpu_count() or 0


def _mem_gib() -> float:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
