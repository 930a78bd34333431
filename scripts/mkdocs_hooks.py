"""MkDocs hooks: pages written from the code at build time, so they cannot drift from it.

docs/reference/cli.md is replaced by the CLI reference (virtsnap.cli.reference); a `<!-- virtsnap:driver-flags -->`
marker by the table of flags each driver accepts, read from the drivers' capability tables; a
`<!-- virtsnap:plot -->` marker by an SVG chart of the Markdown table just above it (one line per row, the
numeric columns as the x axis, both axes logarithmic), so a plot always shows the numbers the page prints.
"""

from __future__ import annotations

import html
import importlib
import math
import re
from pathlib import Path
from typing import Any

from virtsnap.cli import reference
from virtsnap.drivers.base import Op
from virtsnap.flags import SnapshotCreate, SnapshotDelete, SnapshotRevert

# Every driver package's driver module (drivers/<name>/driver.py), found rather than listed: a new driver
# gets its column by existing. The order puts the test driver first, then by name.
DRIVER_ORDER = ("test", "qemu", "esx", "vbox")


def _driver_modules() -> list[tuple[str, Any]]:
    import virtsnap.drivers

    root = Path(next(iter(virtsnap.drivers.__path__)))
    names = sorted((d.name for d in root.iterdir() if (d / "driver.py").is_file()),  # some have no __init__.py
                   key=lambda n: (DRIVER_ORDER.index(n) if n in DRIVER_ORDER else len(DRIVER_ORDER), n))
    return [(name, importlib.import_module(f"virtsnap.drivers.{name}.driver")) for name in names]


TABLES = ((Op.SNAPSHOT_CREATE, "VIR_DOMAIN_SNAPSHOT_CREATE_", SnapshotCreate),
          (Op.REVERT, "VIR_DOMAIN_SNAPSHOT_REVERT_", SnapshotRevert),
          (Op.SNAPSHOT_DELETE, "VIR_DOMAIN_SNAPSHOT_DELETE_", SnapshotDelete))
VERBS = (("snapshot-check (`snapshotCheck`)", "snapshot_check"),
         ("rename (`snapshot-edit` of the name)", "snapshot_rename"))


def driver_flags() -> str:
    """One table: a row per flag of create, revert and delete, a column per driver, ✓ where it is accepted."""
    caps = []
    classes = []
    # The libvirt+ driver has no table of its own: libvirtd underneath accepts or refuses each flag
    # (docs/libvirt-driver.md)
    drivers = [(name, module) for name, module in _driver_modules() if hasattr(module, "CAPABILITIES")]
    for _, module in drivers:
        caps.append(module.CAPABILITIES)
        classes.append([v for v in vars(module).values() if getattr(v, "capabilities", None) is module.CAPABILITIES])
    out = ["| | " + " | ".join(name for name, _ in drivers) + " |\n", "|---|" + ":-:|" * len(drivers) + "\n"]
    for op, prefix, flags in TABLES:
        for flag in flags:
            marks = ["✓" if cap.flags.get(op, 0) & flag else "" for cap in caps]
            out.append(f"| `{prefix}{flag.name}` | " + " | ".join(marks) + " |\n")
    for label, method in VERBS:
        marks = ["✓" if any(hasattr(cls, method) for cls in found) else "" for found in classes]
        out.append(f"| {label} | " + " | ".join(marks) + " |\n")
    return "".join(out)


def _number(cell: str) -> float | None:
    try:
        return float(cell.strip().replace(",", ""))
    except ValueError:
        return None


def plot(table: str, title: str) -> str:
    """An SVG line chart of a Markdown table: x = the header's numeric columns, one line per row (log-log)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()]
    header, body = rows[0], [r for r in rows[2:] if len(r) == len(rows[0])]
    cols = [i for i, cell in enumerate(header) if _number(cell) is not None]
    xs = [_number(header[i]) or 1.0 for i in cols]
    series = [(row[0].strip("`"), [_number(row[i]) for i in cols]) for row in body]
    values = [v for _, ys in series for v in ys if v]
    width, height, left, right, top, bottom = 820, 420, 70, 290, 30, 50
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    ly0, ly1 = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (math.log10(x) - lx0) / (lx1 - lx0) * (width - left - right)
        py = height - bottom - (math.log10(y) - ly0) / (ly1 - ly0) * (height - top - bottom)
        return round(px, 1), round(py, 1)

    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{html.escape(title)}" style="max-width:100%;font:12px sans-serif">',
           f'<text x="{left}" y="18" font-weight="bold">{html.escape(title)}</text>']
    for exp in range(ly0, ly1 + 1):
        _, py = at(xs[0], 10.0 ** exp)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py}" y2="{py}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{py + 4}" text-anchor="end">{10.0 ** exp:g} ms</text>')
    for x, label in zip(xs, (header[i] for i in cols), strict=True):
        px, _ = at(x, 10.0 ** ly0)
        out.append(f'<line x1="{px}" x2="{px}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>'
                   f'<text x="{px}" y="{height - bottom + 16}" text-anchor="middle">{html.escape(label)}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
               f'{html.escape(header[0])} count →</text>'.replace("operation count", "snapshots"))
    for n, (name, ys) in enumerate(series):
        color = palette[n % len(palette)]
        points = " ".join(f"{a},{b}" for a, b in (at(x, y) for x, y in zip(xs, ys, strict=True) if y))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        ly = top + 14 * n + 10
        out.append(f'<line x1="{width - right + 12}" x2="{width - right + 32}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/><text x="{width - right + 38}" y="{ly + 4}">'
                   f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


PLOT = re.compile(r"((?:^\|.*\|[ \t]*\n)+)\n?<!-- virtsnap:plot (.*?) -->", re.M)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- virtsnap:cli-reference" in markdown:
        return reference.markdown()
    markdown = markdown.replace("<!-- virtsnap:driver-flags -->", driver_flags())
    return PLOT.sub(lambda m: m.group(1) + "\n" + plot(m.group(1), m.group(2)) + "\n", markdown)
