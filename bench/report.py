"""Turn the benchmarks' results (bench/results/*.json, one file per script) into one report:
bench/results/report.md (Markdown tables: medians, ratios against the anchors each script measured in the same
run, the goals, the machine) and bench/results/latency.png (latency against snapshot count, log-x, one line per
operation, from bench_scale.py).

Usage: python bench/report.py [bench/results]   (`make bench` runs it last; bench_scale.py also calls it)
The PNG needs matplotlib (pip install 'virtsnap[bench]'); without it only the Markdown is written.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from common import RESULTS

# operations that touch one snapshot (or its children): the "under 2 ms at 10,000" goal
POINT_OPS = ("create", "redefine existing as current", "delete (leaf)", "delete (3 children)", "lookup",
             "lookup after another process's create", "current", "getParent", "getXMLDesc", "revert")
WHOLE_OPS = ("listAllSnapshots", "snapshot-list --tree")
OP_GOAL_MS = 2.0
TREE_GOAL_MS = 200.0  # at 10,000 (issue 8)
TREE_GOAL_MS_100K = 2000.0  # at 100,000 (issue 21)
FLAT_GOAL = 1.2  # a cold read of one snapshot of the big domain against the same of the small one (issue 21)
COLD_GOAL_MS = 50.0  # a read-only command from a fresh process (issue 21; issue 8's was 100)
POINT_COLD_GOAL_MS = 40.0  # a cold snapshot-current of the big domain (issue 21)
DELETE_RAW_GOAL = 1.3  # internal delete against raw QMP (issue 21: and faster than libvirt 9.0)
PAUSE_BG_GOAL = 1.2  # LIVE pause against background-snapshot alone, measured in the same run (issue 21)
LIBVIRT_RATIO_GOAL = 2.0


def med_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def loadavg(text: str) -> str:
    """'0.57, 1.58, 2.28' from either that or a repr'd tuple of floats."""
    import re

    return ", ".join(f"{float(x):.2f}" for x in re.findall(r"[0-9.]+", text)) or text


def ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def scale_medians(result: dict, driver: str) -> dict[str, dict[int, float]]:
    """op -> size -> median ms"""
    out: dict[str, dict[int, float]] = {}
    for size, ops in result["scale"].get(driver, {}).items():
        for op, samples in ops.items():
            out.setdefault(op, {})[int(size)] = med_ms(samples)
    return out


def run_line(m: dict, what: str) -> str:
    return (f"Run {m['date']} on `{m['uname']}`, {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
            f"libvirt-python {m.get('libvirt_python') or '-'}; load average (1, 5, 15 min) "
            f"{loadavg(m['load_before'])} before, {loadavg(m.get('load_after', '?'))} after. {what}")


def build_markdown(result: dict) -> str:
    """The scale section (bench_scale.py)."""
    m = result["machine"]
    sizes: list[int] = result["sizes"]
    big = max(sizes)
    qemu = scale_medians(result, "qemu")
    test = scale_medians(result, "test")
    lib = scale_medians(result, "libvirt-test")
    cold = {label: med_ms(samples) for label, samples in result["cold"].items()}
    lines = [
        "## Snapshot metadata at scale (`bench/bench_scale.py`)",
        "",
        run_line(m, f"Medians in milliseconds of {result['samples']} samples per operation and size (whole-forest "
                    "listings: 3 to 10), each driver in a fresh process."),
        "",
        "Forest: snapshot *i* is a child of *i-1*, every 10th branches off a random earlier one, every 1,000th "
        "starts a new root. QEMU metadata is built through REDEFINE (no guest; the disk image does not exist, so "
        "delete finds no internal snapshot to remove and only the metadata and the journal are written). "
        "Create on the test driver is a plain create (child of current).",
        "",
    ]

    # goals
    worst_q = max(((op, qemu[op][big]) for op in POINT_OPS if op in qemu and big in qemu[op]), key=lambda x: x[1])
    worst_t = max(((op, test[op][big]) for op in POINT_OPS if op in test and big in test[op]), key=lambda x: x[1])
    # the goal's commands: snapshot-list and snapshot-current of a small domain, on both URIs
    cold_rows = [(label, ms) for label, ms in cold.items() if label.startswith("virtsnap") and "big" not in label]
    compare = result.get("compare", {})
    goal_rows = []
    tree_goals = [(s, g) for s, g in ((10000, TREE_GOAL_MS), (100000, TREE_GOAL_MS_100K)) if s in sizes]
    for size, goal in tree_goals or [(big, TREE_GOAL_MS)]:
        for uri, ops in (("qemu:///session", qemu), ("test:///default", test)):
            ms = ops.get("snapshot-list --tree", {}).get(size)
            goal_rows.append([f"`snapshot-list --tree` of {size:,}, in-process, {uri}", f"< {goal:.0f}", fmt(ms),
                              ok(ms is not None and ms < goal)])
    goal_rows += [
        [f"slowest single-snapshot operation at {big:,}, qemu:///session ({worst_q[0]})", f"< {OP_GOAL_MS:g}",
         fmt(worst_q[1]), ok(worst_q[1] < OP_GOAL_MS)],
        [f"slowest single-snapshot operation at {big:,}, test:///default ({worst_t[0]})", f"< {OP_GOAL_MS:g}",
         fmt(worst_t[1]), ok(worst_t[1] < OP_GOAL_MS)],
    ]
    floor = next((ms for label, ms in cold.items() if label.startswith("python -c pass")), None)
    virsh = next((ms for label, ms in cold.items() if label.startswith("virsh")), None)
    anchors = ", ".join(f"{name} {fmt(ms)}" for name, ms in (("interpreter alone", floor), ("virsh", virsh))
                        if ms is not None)
    for label, ms in cold_rows:
        goal_rows.append([f"cold start: `{label.split(' (')[0]}` ({anchors})", f"≤ {COLD_GOAL_MS:.0f}", fmt(ms),
                          ok(ms <= COLD_GOAL_MS)])
    for label, ms in cold.items():
        if "snapshot-current big" in label:
            goal_rows.append([f"cold `snapshot-current` of the domain with {big:,} snapshots",
                              f"≤ {POINT_COLD_GOAL_MS:.0f}", fmt(ms), ok(ms <= POINT_COLD_GOAL_MS)])
        if "--tree" in label and label.startswith("virtsnap"):
            goal_rows.append([f"cold `snapshot-list --tree` of {big:,}", f"< {TREE_GOAL_MS_100K:.0f}", fmt(ms),
                              ok(ms < TREE_GOAL_MS_100K)])
    for label, ms in cold.items():  # one snapshot read alone: big against small, same run
        if " big s" in label:
            small = next((v for k, v in cold.items() if k.startswith(label.split(" big ")[0] + " small ")), None)
            if small:
                goal_rows.append([f"cold `{label.split(' -c qemu:///session ')[1].split(' (')[0]}` of {big:,} "
                                  f"against {label.split(' big ')[0].split()[-1]} of 10", f"≤ {FLAT_GOAL:g}x",
                                  f"{ms / small:.2f}x ({fmt(ms)} vs {fmt(small)})", ok(ms / small <= FLAT_GOAL)])
    if compare.get("libvirt"):
        n = compare["creates"]
        for key, label in (("create", f"{n:,} creates"), ("list_all", f"listAllSnapshots of {n:,}")):
            mine = statistics.median(r[key] for r in compare["virtsnap"]) * 1000
            ref = statistics.median(r[key] for r in compare["libvirt"]) * 1000
            goal_rows.append([f"test driver vs libvirt's C test driver: {label}", f"≤ {LIBVIRT_RATIO_GOAL:g}x",
                              f"{mine / ref:.2f}x ({fmt(mine)} vs {fmt(ref)})", ok(mine / ref <= LIBVIRT_RATIO_GOAL)])
    lines += ["### Goals (issues 8 and 21)", ""]
    lines += table(["goal", "target (ms)", "measured (ms)", ""], goal_rows, "lrrl")
    lines.append("")

    # qemu scale table
    ops = [op for op in (*POINT_OPS, *WHOLE_OPS) if op in qemu]
    rows = []
    for op in ops:
        cells = [fmt(qemu[op].get(s)) for s in sizes]
        first, last = qemu[op].get(min(sizes)), qemu[op].get(big)
        growth = f"{last / first:.1f}x" if first and last else "-"
        rows.append([op, *cells, growth])
    lines += ["### qemu:///session metadata (ms) against snapshot count", ""]
    lines += table(["operation", *[f"{s:,}" for s in sizes], f"{big:,} / {min(sizes):,}"], rows,
                   "l" + "r" * (len(sizes) + 1))
    lines.append("")

    # test driver vs libvirt (libvirt grown only to --anchor-max: compared at the largest size it reached)
    lib_big = max((s for by_size in lib.values() for s in by_size), default=big)
    ops = [op for op in (*POINT_OPS, *WHOLE_OPS) if op in test]
    rows = []
    for op in ops:
        cells = [fmt(test[op].get(s)) for s in sizes]
        ref = lib.get(op, {}).get(lib_big)
        mine = test[op].get(lib_big)
        rows.append([op, *cells, fmt(ref), f"{mine / ref:.2f}x" if ref and mine else "-"])
    lines += ["### test:///default (ms) against snapshot count, and libvirt 9.0's C test driver", ""]
    lines += table(["operation", *[f"{s:,}" for s in sizes], f"libvirt at {lib_big:,}", "ratio"], rows,
                   "l" + "r" * (len(sizes) + 2))
    lines += ["", "libvirt's `snapshot-list --tree` column is virsh's algorithm in Python over libvirt-python "
              "(listAllSnapshots, then getParent per snapshot, then the tree); virtsnap's is the CLI's main() "
              "in-process, output captured.", ""]

    # cold start
    rows = []
    for label, samples in result["cold"].items():
        rows.append([f"`{label}`", fmt(med_ms(samples)), f"{fmt(min(samples) * 1000)}-{fmt(max(samples) * 1000)}"])
    lines += [f"### Cold CLI start (fresh processes, median of {result['runs']}; .pyc compiled)", ""]
    lines += table(["command", "median ms", "spread (ms)"], rows, "lrr")
    lines.append("")

    if result.get("imports"):
        imports = result["imports"]
        rows = [[f"`{name}`", fmt(ms)] for name, ms in sorted(imports.items(), key=lambda kv: -kv[1])]
        lines += ["### Where `virtsnap -c qemu:///session snapshot-list small` spends its imports",
                  "", "`python -X importtime` (which itself slows imports down), median of 5; each module's time "
                  "includes what it imported first (nested rows overlap).", ""]
        lines += table(["module", "ms"], rows, "lr")
        lines.append("")

    if compare:
        n = compare["creates"]
        rows = []
        for key, label in (("create", f"{n:,} creates"), ("list_all", f"listAllSnapshots of {n:,}"),
                           ("list_names_topo", f"snapshotListNames(TOPOLOGICAL) of {n:,}"),
                           ("xml", "getXMLDesc of one")):
            mine = statistics.median(r[key] for r in compare["virtsnap"]) * 1000
            ref = statistics.median(r[key] for r in compare["libvirt"]) * 1000 if compare.get("libvirt") else None
            rows.append([label, fmt(mine), fmt(ref), f"{mine / ref:.2f}x" if ref else "-"])
        lines += [f"### test:///default against libvirt 9.0, {n:,} creates and a list (bench_test_driver.py's "
                  f"workload, fresh interpreter per run, median of {len(compare['virtsnap'])})", ""]
        lines += table(["workload", "virtsnap (ms)", "libvirt 9.0 (ms)", "ratio"], rows, "lrrr")
        lines.append("")
    lines += ["![latency against snapshot count](latency.png)", ""]
    return "\n".join(lines)


def ms_cell(samples: list[float] | None) -> str:
    """The median, and the spread (lowest-highest sample) on a shared machine whose speed drifts."""
    if not samples:
        return "-"
    if len(samples) < 3:
        return f"{fmt(med_ms(samples))} ms"
    return f"{fmt(med_ms(samples))} ms ({fmt(min(samples) * 1000)}-{fmt(max(samples) * 1000)})"


def ratio(mine: list[float] | None, ref: list[float] | None) -> str:
    if not mine or not ref:
        return "-"
    return f"{statistics.median(mine) / statistics.median(ref):.2f}x"


def build_test_driver(result: dict) -> str:
    """bench_test_driver.py: test:///default against libvirt 9.0's C test driver, and cold start against virsh."""
    n = result["count"]
    lines = ["## test:///default against libvirt 9.0's C test driver (`bench/bench_test_driver.py`)", "",
             run_line(result["machine"], f"Medians of {result['runs']} fresh interpreters (cold starts: "
                                         f"{2 * result['runs']} processes)."), ""]
    rows = []
    for key, label in (("create", f"{n:,} creates"), ("list_all", f"listAllSnapshots of {n:,}"),
                       ("list_names_topo", f"snapshotListNames(TOPOLOGICAL) of {n:,}"),
                       ("xml", "getXMLDesc of one")):
        mine = [r[key] for r in result["virtsnap"]]
        ref = [r[key] for r in result["libvirt"]]
        rows.append([label, ms_cell(mine), ms_cell(ref), ratio(mine, ref)])
    for label, sides in result["cold"].items():
        rows.append([f"cold start: {label}", ms_cell(sides.get("virtsnap")), ms_cell(sides.get("libvirt")),
                     ratio(sides.get("virtsnap"), sides.get("libvirt"))])
    lines += table(["operation", "virtsnap", "libvirt 9.0", "virtsnap / libvirt"], rows, "lrrr")
    lines += ["", f"Goals (issue 2): {n:,} creates and a list within {LIBVIRT_RATIO_GOAL:g}x of libvirt; cold "
                  f"`snapshot-list` under {COLD_GOAL_MS:.0f} ms (virsh's column is libvirt's own C client).", ""]
    return "\n".join(lines)


def build_qemu(result: dict) -> str:
    """bench_qemu.py: internal snapshots of a running guest against raw QMP and libvirt 9.0."""
    ours, raw, lib = result["virtsnap"], result["raw_qmp"], result.get("libvirt") or {}
    lines = ["## Internal snapshots of a running 128 MiB TCG guest (`bench/bench_qemu.py`)", "",
             run_line(result["machine"], f"Medians of {result['runs']} runs."), ""]
    rows = [[op, ms_cell(ours[op]), ms_cell(raw[op]), ms_cell(lib.get(op)), ratio(ours[op], raw[op]),
             ratio(lib.get(op), ours[op])] for op in ("create", "revert", "delete")]
    lines += table(["operation", "virtsnap", "raw QMP", "libvirt 9.0", "virtsnap / raw", "libvirt / virtsnap"],
                   rows, "lrrrrr")
    lines += ["", "Goals (issue 3): within 1.3x of raw QMP; revert at least 10x faster than libvirt 9.0 (which "
                  "restarts QEMU). libvirt runs only where libvirtd's qemu:///system can be started (root).", ""]
    mine, floor = statistics.median(ours["delete"]), statistics.median(raw["delete"])
    goal_rows = [["internal delete against raw QMP's blockdev-snapshot-delete-internal-sync (same run)",
                  f"≤ {DELETE_RAW_GOAL:g}x",
                  f"{mine / floor:.2f}x", ok(mine / floor <= DELETE_RAW_GOAL)]]
    if lib.get("delete"):
        theirs = statistics.median(lib["delete"])
        goal_rows.append(["internal delete against libvirt 9.0 (same run)", "< 1x", f"{mine / theirs:.2f}x",
                          ok(mine < theirs)])
    lines += ["### Goals (issue 21)", ""]
    lines += table(["goal", "target", "measured", ""], goal_rows, "lrrl")
    lines.append("")
    return "\n".join(lines)


def build_external(result: dict) -> str:
    """bench_external.py: external snapshots against raw QMP / qemu-img and libvirt 9.0."""
    ours, raw, lib = result["virtsnap"], result["raw"], result.get("libvirt") or {}
    lines = ["## External snapshots on TCG guests (`bench/bench_external.py`)", "",
             run_line(result["machine"], f"Medians of {result['runs']} runs."), ""]
    rows = []
    for key, label in (("quiesce", "disk-only snapshot with QUIESCE, 256 MiB guest (raw: no freeze)"),
                       ("quiesce_frozen", "disk-only snapshot with QUIESCE (raw: the agent's freeze and thaw too)"),
                       ("delete_off", "delete an external snapshot, domain shut off"),
                       ("pause_live", "guest pause, LIVE memory snapshot, 512 MiB guest keeping 384 MiB dirty"),
                       ("pause_save", "guest pause, non-live memory snapshot (save)"),
                       ("pause_bg_alone", "guest pause, background-snapshot alone (no stop, no disk switch; "
                                          "virtsnap column: on virtsnap's guest, between its snapshots)")):
        rows.append([label, ms_cell(ours.get(key)), ms_cell(raw.get(key)), ms_cell(lib.get(key)),
                     ratio(ours.get(key), raw.get(key))])
    lines += table(["measure", "virtsnap", "raw QMP / qemu-img", "libvirt 9.0", "virtsnap / raw"], rows, "lrrrr")
    lines += ["", "Goals (issue 4): QUIESCE within 1.3x of raw QMP; delete of a shut-off domain's external "
                  "snapshot under 100 ms; LIVE guest pause at most 5 ms (from QEMU's STOP/RESUME timestamps).", ""]
    # the anchor: background-snapshot alone on virtsnap's own guest, round by round with its LIVE snapshots
    # (older results: on the raw QMP side's guest)
    live, alone = ours.get("pause_live"), ours.get("pause_bg_alone") or raw.get("pause_bg_alone")
    if live and alone:
        share = statistics.median(live) / statistics.median(alone)
        paired = ours.get("pause_bg_alone") and len(live) == len(alone)
        rounds = statistics.median(a / b for a, b in zip(live, alone, strict=True)) if paired else None
        lines += ["### Goal (issue 21)", ""]
        lines += table(["goal", "target", "measured", ""],
                       [["LIVE pause against background-snapshot alone (same run, same guest; disks and memory of "
                         f"one instant): {ms_cell(live)} against {ms_cell(alone)}",
                         f"≤ {PAUSE_BG_GOAL:g}x", f"{share:.2f}x" + (f" (per round {rounds:.2f}x)" if rounds else ""),
                         ok(share <= PAUSE_BG_GOAL)]], "lrrl")
        lines.append("")
    return "\n".join(lines)


def build_live_pause(result: dict) -> str:
    """bench_live_pause.py: where the LIVE pause goes, step by step (its own table)."""
    return "\n".join(["## LIVE memory snapshot pause by step (`bench/bench_live_pause.py`)", "",
                      run_line(result["machine"], f"{result['runs']} snapshots per guest."), "",
                      *result["table"], ""])


def build_esx(result: dict) -> str:
    """bench_esx.py: the ESX driver against raw pyvmomi on vcsim (medians and SOAP round trips per row)."""
    lines = ["## ESX driver against raw pyvmomi on vcsim (`bench/bench_esx.py`)", "",
             run_line(result["machine"], f"pyvmomi {result['pyvmomi']}; medians of {result['runs']} runs; a tree of "
                                         f"{result['snapshots']} snapshots."), ""]
    rows = []
    for row in result["rows"]:
        m, c = row["median"], row["round_trips"]
        ours = m["ours"]
        rows.append([row["operation"], *(fmt(m[k] * 1000) for k in ("idiom", "min", "name", "ours")),
                     *(f"{ours / m[k]:.2f}x" for k in ("idiom", "min", "name")),
                     f"{c['idiom']}/{c['min']}/{c['name']}/{c['ours']}"])
    lines += table(["operation (ms)", "raw WaitForTask", "raw minimal", "raw by name", "virtsnap", "vs WaitForTask",
                    "vs minimal", "vs by name", "round trips (WaitForTask/min/name/virtsnap)"], rows, "lrrrrrrrl")
    lines += ["", "Goal (issue 5): within 1.2x of raw pyvmomi, one round trip for the tree. List rows: every raw "
                  "column is the same `vm.snapshot` walk.", ""]
    return "\n".join(lines)


def build_web(result: dict) -> str:
    """bench_web.py: time to first paint of a large tree in virtsnap serve's page (headless Chromium)."""
    s = result["samples"]
    rows = [["first contentful paint (page shell)", ms_cell(s["fcp"])], ["`/api/tree` request", ms_cell(s["api"])],
            ["tree painted, from navigation start", ms_cell(s["tree"])]]
    return "\n".join([f"## Web view: first paint of a {result['size']}-snapshot tree (`bench/bench_web.py`)", "",
                      run_line(result["machine"], f"Median of {len(s['tree'])} loads in headless Chromium; "
                               f"{result['rows_shown']} rows shown (branches collapsed)."), "",
                      *table(["step", "median"], rows, "lr"), ""])


def build_remote(result: dict) -> str:
    """bench_remote.py: a call over test+ssh:// against the same call on test:///default, and opening it."""
    rows = [["`snapshotNum()` on test:///default", fmt(result["call_local_ms"])],
            ["the same over test+ssh:// (sshd on loopback)", fmt(result["call_remote_ms"])],
            ["overhead of a remote call", fmt(result["overhead_ms"])],
            ["opening the ssh connection (ssh, remote Python start, hello)", fmt(result["open_ssh_ms"])]]
    return "\n".join(["## Remote: the cost of a call over ssh (`bench/bench_remote.py`)", "",
                      run_line(result["machine"], f"Median of {result['samples']} connections, "
                               f"{result['calls']} calls each."), "",
                      *table(["measure", "median ms"], rows, "lr"), ""])


def build_ansible(result: dict) -> str:
    """bench_ansible.py: the wall time of a 3-host ansible-playbook run."""
    rows = [["snapshot two domains on each host", f"{result['create_s']:.2f}"],
            ["the same play again (changed=0)", f"{result['unchanged_s']:.2f}"]]
    return "\n".join([f"## Ansible: a {result['hosts']}-host playbook (`bench/bench_ansible.py`)", "",
                      run_line(result["machine"], f"{result['domains_per_host']} domains per host, sshd hosts on "
                               "loopback; one run each."), "",
                      *table(["play", "wall time s"], rows, "lr"), ""])


# results file -> its section; the report lists them in this order, each only if its script has run
SECTIONS = (("scale", build_markdown), ("test_driver", build_test_driver), ("qemu", build_qemu),
            ("external", build_external), ("live_pause", build_live_pause), ("esx", build_esx), ("web", build_web),
            ("remote", build_remote), ("ansible", build_ansible))


def build_report(out: Path) -> tuple[str, dict | None]:
    """The whole report from every results file in `out`, and the scale results (for the plot) if present."""
    parts = ["# virtsnap benchmarks", "",
             "Each section comes from one script's results file (bench/results/<name>.json) and says when and where "
             "it ran; ratios compare with the anchors that script measured in the same run. `make bench` runs every "
             "script, then `python bench/report.py`.", ""]
    scale = None
    missing = []
    for name, build in SECTIONS:
        path = out / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        result = json.loads(path.read_text())
        if name == "scale":
            scale = result
        parts.append(build(result))
    if missing:
        parts += [f"Not run yet: {', '.join(f'`{m}`' for m in missing)}.", ""]
    return "\n".join(parts) + "\n", scale


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib missing (pip install 'virtsnap[bench]'): no plot", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    panels = [("qemu", "qemu:///session (REDEFINE-built metadata)", None),
              ("test", "test:///default (dotted: libvirt 9.0 C test driver)", "libvirt-test")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), sharey=True)
    ops = [*POINT_OPS, *WHOLE_OPS]
    colors = {op: plt.get_cmap("tab10")(i) for i, op in enumerate(POINT_OPS)}
    colors.update({"listAllSnapshots": "#b8860b", "snapshot-list --tree": "black"})
    for ax, (driver, title, anchor) in zip(axes, panels, strict=True):
        mine = scale_medians(result, driver)
        ref = scale_medians(result, anchor) if anchor else {}
        for op in ops:
            if op not in mine:
                continue
            xs = [s for s in sizes if s in mine[op]]
            ax.plot(xs, [mine[op][s] for s in xs], marker="o", markersize=3.5, color=colors[op], label=op,
                    linewidth=1.8)
            if op in ref:
                ax.plot(xs, [ref[op].get(s) for s in xs], linestyle=":", color=colors[op], linewidth=1.4)
        ax.axhline(OP_GOAL_MS, color="gray", linewidth=1, linestyle="--",
                   label=f"goal: {OP_GOAL_MS:g} ms per snapshot op")
        ax.axhline(TREE_GOAL_MS, color="firebrick", linewidth=1, linestyle="--",
                   label=f"goal: --tree of {max(sizes):,} in {TREE_GOAL_MS:.0f} ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{s:,}" for s in sizes])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("snapshots in the domain")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("median latency (ms, log)")
    legend: dict[str, object] = {}
    for ax in axes:  # every operation once, from whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    order = [op for op in ops if op in legend] + [label for label in legend if label not in ops]
    fig.legend([legend[k] for k in order], order, loc="center right", fontsize=8.5, frameon=False)
    fig.suptitle(f"virtsnap metadata latency against snapshot count ({result['machine']['date']}, "
                 f"{result['machine']['nproc']} CPUs)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(out: Path = RESULTS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text, scale = build_report(out)
    (out / "report.md").write_text(text)
    print(f"wrote {out / 'report.md'}", file=sys.stderr)
    if scale is not None and plot(scale, out / "latency.png"):
        print(f"wrote {out / 'latency.png'}", file=sys.stderr)


def main() -> int:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    write_report(source if source.is_dir() else source.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
