"""Benchmark: time to first paint of a 1,000-snapshot tree in `virtsnap serve`'s page (issue 19).

The app serves test:///default (grown to --size snapshots, the tests' deterministic branching history) from this
process; Debian's headless Chromium loads the page --samples times, each a fresh navigation. Chromium's own
performance timing gives, from the start of navigation: first-contentful-paint (the page shell), the
"tree-painted" mark the page sets in the first task after the frame that drew the tree, and the /api/tree
request's duration (the server's listing of every snapshot with its XML-derived fields).

Writes bench/results/web.json. Usage: python bench/bench_web.py [--size 1000] [--samples 9]
Goal: the tree painted within 1 s of navigation at 1,000 snapshots.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import machine, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "web"))
from webtools import chromium, clear, grow, serve_inprocess, wait  # noqa: E402

import virtsnap  # noqa: E402

TIMING = """
const paint = performance.getEntriesByName('first-contentful-paint')[0];
const tree = performance.getEntriesByName('tree-painted')[0];
const api = performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/tree'))[0];
return {fcp: paint ? paint.startTime : null, tree: tree.startTime, api: api ? api.duration : null,
        rows: document.querySelectorAll('#tree li').length};
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=9)
    args = parser.parse_args()
    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    grow(dom, args.size)
    driver = chromium()
    samples: dict[str, list[float]] = {"fcp": [], "tree": [], "api": []}
    rows = 0
    try:
        with serve_inprocess(conn) as served:
            driver.get(served.url)  # the token URL: the cookie for the loads below
            for i in range(args.samples + 1):
                driver.get(f"{served.base}/?load={i}#test")
                wait(driver, lambda d: d.execute_script("return document.body.dataset.treePainted") == "1")
                t = driver.execute_script(TIMING)
                rows = t["rows"]
                if i == 0:
                    continue  # warm-up: Chromium's first load compiles the script
                for key in samples:
                    if t[key] is not None:
                        samples[key].append(t[key] / 1000)
    finally:
        driver.quit()
        clear(dom)
        conn.close()
    print(f"virtsnap serve, {args.size} snapshots ({rows} rows shown, branches collapsed), "
          f"median of {args.samples} loads in headless Chromium:")
    for key, label in (("fcp", "first contentful paint (page shell)"), ("api", "/api/tree request"),
                       ("tree", "tree painted (from navigation start)")):
        values = samples[key]
        print(f"  {label:40s} {statistics.median(values) * 1000:8.1f} ms  "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
    write_results("web", {"machine": machine(), "size": args.size, "rows_shown": rows, "samples": samples})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
