#!/usr/bin/env python3
"""Fuzz virtsnap's XML input paths: parse_snapshot (CREATE and REDEFINE) and the API's snapshot/domain XML calls.

Every input is decoded as the CLI decodes a file (UTF-8, invalid bytes kept as lone surrogates), given to
parse_snapshot in both modes, then to one API path on a test:///default connection (snapshotCreateXML,
snapshotCreateXML with REDEFINE, or defineXML; chosen by a hash of the input). Outcomes are counted per target.

A finding is: any exception other than virtsnap.libvirtError; a libvirtError that only wraps a Python exception
("internal error: SomethingError: ..."); or an input that takes more than 1 s. Findings are saved under
fuzz/findings/ (gitignored), at most a few inputs per distinct signature, with a .txt explaining each.

Engines: atheris (libFuzzer, coverage-guided over virtsnap's Python code) when it is installed, else a builtin
mutation fuzzer. Both use the same structure-aware mutator on top of byte-level mutations, seeded from
tests/data/snapshot_xml/**/*.xml.

    .venv/bin/python fuzz/fuzz_snapshot_xml.py --runs 500000 --seed 1            # one worker
    .venv/bin/python fuzz/fuzz_snapshot_xml.py --probes                         # large-input timing probes
    .venv/bin/python fuzz/fuzz_snapshot_xml.py --summary                        # add up the workers' stats

Not collected by pytest (pytest's testpaths is tests/, and this file is not named test_*).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import shutil
import sys
import time
import traceback
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FINDINGS = HERE / "findings"
WORK = HERE / "findings" / "work"
SEED_DIR = ROOT / "tests" / "data" / "snapshot_xml"
HANG_SECONDS = 1.0
SAMPLES_PER_SIGNATURE = 5
WRAPPED = re.compile(r"internal error: ([A-Za-z_]*(?:Error|Exception|Warning))\b")
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

# -- the harness --------------------------------------------------------------------------------------


def _import_targets(instrument: bool) -> Any:
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["virtsnap"]):
            import virtsnap
            import virtsnap.conf.domain_xml
            import virtsnap.conf.snapshot_xml
            import virtsnap.drivers.test.driver  # instrumented now, used through the API
    import virtsnap
    from virtsnap.conf import snapshot_xml

    return virtsnap, snapshot_xml


class Harness:
    def __init__(self, seed: int, runs: int, instrument: bool) -> None:
        self.virtsnap, self.snapshot_xml = _import_targets(instrument)
        self.seed = seed
        self.runs = runs
        self.count = 0
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.findings: Counter[str] = Counter()
        self.saved: Counter[str] = Counter()
        self.slowest = (0.0, "")
        self.started = time.time()
        self.resets = 0
        self._open()

    # test:///default with a small tree: s1 -> s2 (current). Reset after any successful call.
    def _open(self) -> None:
        v = self.virtsnap
        self.conn = v.open("test:///default")
        self.dom = self.conn.lookupByName("test")
        self.dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
        self.dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")
        self.baseline = self._state()
        self.cheap_baseline = self._state(full=False)

    def _state(self, full: bool = True) -> Any:
        """What a refused call must leave alone: names, current, domains, state; the XML too when `full`."""
        cheap = (self.dom.snapshotListNames(), self.dom.snapshotCurrent().getName(),
                 [d.name() for d in self.conn.listAllDomains()], self.dom.state())
        if not full:
            return cheap
        return (*cheap, self.dom.XMLDesc(), self.dom.snapshotLookupByName("s2").getXMLDesc())

    def _reset(self) -> None:
        self.conn.close()
        self.resets += 1
        self._open()

    def _call(self, target: str, fn: Any, data: bytes) -> bool:
        """Run one target; count its outcome; returns whether it succeeded."""
        v = self.virtsnap
        try:
            fn()
        except v.libvirtError as exc:
            message = exc.get_error_message()
            wrapped = WRAPPED.search(message) if exc.get_error_code() == 1 else None
            if wrapped:
                self._finding(f"{target}-wrapped-{wrapped.group(1)}", data, f"libvirtError wrapping: {message}")
                self.outcomes[target]["FINDING"] += 1
            else:
                self.outcomes[target][f"err{exc.get_error_code()}"] += 1
            return False
        except Exception as exc:  # the finding this fuzzer is looking for
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb)
                          if "virtsnap" in f.filename), "?")
            self._finding(f"{target}-{type(exc).__name__}-{where}", data, traceback.format_exc())
            self.outcomes[target]["FINDING"] += 1
            return False
        self.outcomes[target]["ok"] += 1
        return True

    def _finding(self, signature: str, data: bytes, detail: str) -> None:
        signature = re.sub(r"[^A-Za-z0-9_.:-]+", "_", signature)
        self.findings[signature] += 1
        if self.saved[signature] >= SAMPLES_PER_SIGNATURE:
            return
        self.saved[signature] += 1
        save_finding(signature, data, detail)

    def _targets(self, data: bytes) -> tuple[int, bool]:
        """Both parse modes, then one API path; returns (which API path, whether it succeeded)."""
        text = data.decode("utf-8", "surrogateescape")
        sx = self.snapshot_xml
        self._call("parse-create", lambda: sx.parse_snapshot(text, sx.ParseMode.CREATE, now=1700000000.5), data)
        self._call("parse-redefine", lambda: sx.parse_snapshot(text, sx.ParseMode.REDEFINE), data)
        which = zlib.crc32(data) % 3
        if which == 0:
            ok = self._call("api-create", lambda: self.dom.snapshotCreateXML(text), data)
        elif which == 1:
            ok = self._call("api-redefine", lambda: self.dom.snapshotCreateXML(text, 1), data)  # REDEFINE
        else:
            ok = self._call("api-define", lambda: self.conn.defineXML(text), data)
        return which, ok

    def _slow_again(self, data: bytes) -> list[float]:
        """Time a slow input twice more (outcomes not counted again): a hang must reproduce, a busy host not."""
        saved = (self.outcomes, self.findings, self.saved)
        self.outcomes, self.findings, self.saved = defaultdict(Counter), Counter(), Counter(saved[2])
        times = []
        try:
            for _ in range(2):
                self._reset()
                started = time.perf_counter()
                self._targets(data)
                times.append(time.perf_counter() - started)
        finally:
            self.outcomes, self.findings, self.saved = saved
        return times

    def one_input(self, data: bytes) -> None:
        self.count += 1
        started = time.perf_counter()
        which, ok = self._targets(data)
        elapsed = time.perf_counter() - started
        full = self.count % 32 == 0
        if not ok and self._state(full) != (self.baseline if full else self.cheap_baseline):
            self._finding(f"state-changed-by-refused-{('api-create', 'api-redefine', 'api-define')[which]}", data,
                          f"before: {self.baseline!r}\nafter: {self._state()!r}")
            self.outcomes["state"]["changed-on-error"] += 1
            ok = True  # reset below
        if ok:
            self._reset()
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, hashlib.sha1(data).hexdigest()[:12])
        if elapsed > HANG_SECONDS:
            again = self._slow_again(data)
            if min(again) > HANG_SECONDS:
                self._finding("hang", data, f"{elapsed:.2f} s for one input ({len(data)} bytes), then "
                                            f"{', '.join(f'{t:.2f}' for t in again)} s")
                self.outcomes["timing"]["over-1s"] += 1
            else:
                self.outcomes["timing"]["over-1s-once-not-reproduced"] += 1
            self._reset()
        if self.count % 50000 == 0 or self.count == self.runs:
            self.write_stats()
            if self.count == self.runs:
                self.report()

    def stats(self) -> dict[str, Any]:
        elapsed = time.time() - self.started
        return {
            "seed": self.seed, "inputs": self.count, "seconds": round(elapsed, 1),
            "inputs_per_second": round(self.count / elapsed, 1) if elapsed else 0.0,
            "outcomes": {k: dict(v.most_common()) for k, v in sorted(self.outcomes.items())},
            "findings": dict(self.findings.most_common()),
            "slowest_input_seconds": round(self.slowest[0], 3), "slowest_input_sha1": self.slowest[1],
            "connection_resets": self.resets,
        }

    def write_stats(self) -> None:
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / f"stats-seed{self.seed}.json").write_text(json.dumps(self.stats(), indent=1) + "\n")

    def report(self) -> None:
        s = self.stats()
        print(f"\n== seed {s['seed']}: {s['inputs']} inputs in {s['seconds']} s ({s['inputs_per_second']}/s); "
              f"slowest {s['slowest_input_seconds']} s", file=sys.stderr)
        for target, counts in s["outcomes"].items():
            print(f"   {target:15} {counts}", file=sys.stderr)
        print(f"   findings: {s['findings'] or 'none'}", file=sys.stderr)
        sys.stderr.flush()


def save_finding(signature: str, data: bytes, detail: str) -> None:
    FINDINGS.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    stem = f"{signature[:120].replace('.', '_').replace(':', '_')}-{digest}"
    if len(data) > 1 << 20:
        (FINDINGS / f"{stem}.xml.gz").write_bytes(gzip.compress(data))
    else:
        (FINDINGS / f"{stem}.xml").write_bytes(data)
    (FINDINGS / f"{stem}.txt").write_text(f"{signature}\n{len(data)} bytes\n\n{detail}\n")


# -- mutations ----------------------------------------------------------------------------------------
TAGS = ["domainsnapshot", "name", "description", "state", "parent", "creationTime", "memory", "disks", "disk",
        "source", "driver", "domain", "inactiveDomain", "cookie", "uuid", "devices", "target", "os", "type",
        "active", "vcpu", "currentMemory", "metadata", "x:y"]
ATTRS = ["snapshot", "file", "type", "name", "dev", "unit", "device", "bus", "xmlns", "xmlns:x", "x:y", "id"]
VALUES = ["external", "internal", "no", "manual", "default", "running", "paused", "shutoff", "disk-snapshot",
          "nostate", "crashed", "file", "block", "network", "dir", "volume", "nvme", "qcow2", "raw", "vmdk",
          "test", "qemu", "kvm", "vda", "vdb", "hda", "/guest/diskimage1", "/abs/path", "rel/path", "../x",
          "/a/../b", ".", "..", "/", "", " ", "0", "1", "-1", "+1", "1e3", "0x10", "99999999999999999999999",
          "-9223372036854775809", UUID, UUID.upper(), UUID.replace("-", ""), "zzzz", "s1", "s2", "S1",
          "a/b", ".hidden", "\t", "\n", "\x7f", "é", "\U0001f600", "\u202e", "\ufeff", "x" * 300,
          "&amp;", "&lt;", "&#0;", "&#xD800;", "&#x10FFFF;", "&#65;", "&e;", "&undefined;", "]]>", "'", '"']
PROLOGS = ["<?xml version='1.0'?>\n", "<?xml version='1.0' encoding='UTF-8'?>\n",
           "<?xml version='1.0' encoding='ISO-8859-1'?>\n", "<?xml version='1.0' encoding='UTF-16'?>\n",
           "<?xml version='1.1'?>\n", "<?xml version='2.0'?>\n", "\ufeff", "\ufeff<?xml version='1.0'?>",
           "<!DOCTYPE domainsnapshot>\n", '<!DOCTYPE d [<!ENTITY e "eee">]>\n',
           '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n',
           '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x"> %p;]>\n',
           '<!DOCTYPE d SYSTEM "http://127.0.0.1:9/x.dtd">\n', "<!-- c -->", "<?pi data?>", " \n\t"]
SNIPPETS = ["<![CDATA[<name>x</name>]]>", "<!-- <name>x</name> -->", "<?php ?>", "&e;", "&#10;", "&#13;",
            "\x00", "\x1b", "\r\n", "<name/>", "<name></name>", "<name>s1</name>", "<name>a\x00b</name>",
            "<parent><name>s1</name></parent>", "<parent><name>s2</name></parent>",
            "<parent><name>nope</name></parent>", "<state>running</state>", "<state>shutoff</state>",
            "<state>disk-snapshot</state>", "<state>bogus</state>", "<creationTime>1</creationTime>",
            "<creationTime>x</creationTime>", "<memory snapshot='external' file='/m'/>",
            "<memory snapshot='internal'/>", "<memory file='rel'/>", "<memory snapshot='no' file='/m'/>",
            "<disks><disk name='vda'/></disks>", "<disks><disk name='vda' snapshot='external'/></disks>",
            "<disks><disk/></disks>", "<disks><disk name='vda' type='network'><source file='/x'/></disk></disks>",
            "<disks><disk name='vda'><driver type=''/></disk></disks>",
            f"<domain type='test'><name>test</name><uuid>{UUID}</uuid></domain>",
            "<domain type='test'><name>test</name><uuid>not-a-uuid</uuid></domain>",
            "<domain><name>x</name></domain>", "<domain type='test'/>", "<inactiveDomain type='test'><name>i</name>"
            "</inactiveDomain>", "<cookie><cpu/></cookie>", "<active>1</active>",
            "<devices><disk type='file' device='disk'><source file='/g'/><target dev='vda'/></disk></devices>"]
TAG_RE = re.compile(r"<([A-Za-z_][\w:.-]*)(?:\s[^<>]*)?>")
ELEMENT_RE = re.compile(r"<([A-Za-z_][\w:.-]*)(?:\s[^<>]*)?(?:/>|>.*?</\1>)", re.S)
VALUE_RE = re.compile(r"(?<==')[^']*(?=')|(?<=>)[^<>]+(?=</)")


def structural(rng: random.Random, text: str, others: list[str]) -> str:
    """One XML-aware mutation of `text` (which need not be well formed)."""
    op = rng.randrange(14)
    spots = [m.end() for m in TAG_RE.finditer(text)] or [0]
    if op == 0:  # insert a snippet after some tag
        at = rng.choice(spots)
        return text[:at] + rng.choice(SNIPPETS) + text[at:]
    if op == 1:  # replace an attribute value or a text node
        values = list(VALUE_RE.finditer(text))
        if values:
            m = rng.choice(values)
            return text[:m.start()] + rng.choice(VALUES) + text[m.end():]
    if op == 2:  # duplicate an element
        elements = list(ELEMENT_RE.finditer(text))
        if elements:
            m = rng.choice(elements)
            return text[:m.end()] + m.group(0) + text[m.end():]
    if op == 3:  # delete an element
        elements = list(ELEMENT_RE.finditer(text))
        if elements:
            m = rng.choice(elements)
            return text[:m.start()] + text[m.end():]
    if op == 4:  # splice an element from another document
        donor = list(ELEMENT_RE.finditer(rng.choice(others))) if others else []
        if donor:
            at = rng.choice(spots)
            return text[:at] + rng.choice(donor).group(0) + text[at:]
    if op == 5:  # prepend a prolog (declaration, BOM, doctype with entities)
        return rng.choice(PROLOGS) + re.sub(r"^\s*<\?xml[^>]*\?>", "", text)
    if op == 6:  # rename a tag (both ends where it is simple)
        tags = list(TAG_RE.finditer(text))
        if tags:
            old, new = rng.choice(tags).group(1), rng.choice(TAGS)
            return re.sub(rf"(</?){re.escape(old)}\b", rf"\g<1>{new}", text, count=rng.choice([0, 1]))
    if op == 7:  # add an attribute
        tags = list(TAG_RE.finditer(text))
        if tags:
            m = rng.choice(tags)
            at = m.start() + 1 + len(m.group(1))
            return text[:at] + f" {rng.choice(ATTRS)}='{rng.choice(VALUES)}'" + text[at:]
    if op == 8:  # nest: wrap an element in n levels
        elements = list(ELEMENT_RE.finditer(text))
        if elements:
            m, n = rng.choice(elements), rng.choice([2, 10, 100, 255, 260])
            tag = rng.choice(TAGS)
            return text[:m.start()] + f"<{tag}>" * n + m.group(0) + f"</{tag}>" * n + text[m.end():]
    if op == 9:  # repeat a run of characters
        if text:
            a = rng.randrange(len(text))
            b = min(len(text), a + rng.randrange(1, 64))
            return text[:b] + text[a:b] * rng.choice([2, 16, 128]) + text[b:]
    if op == 10:  # change the root
        return re.sub(r"domainsnapshot", rng.choice(["domain", "domainSnapshot", "x:domainsnapshot",
                                                     "domainsnapshot xmlns='urn:x'"]), text, count=1)
    if op == 11:  # truncate
        return text[:rng.randrange(len(text) + 1)]
    if op == 12:  # namespace declarations and prefixed names
        return text.replace("<domainsnapshot", "<domainsnapshot xmlns:x='urn:x'", 1).replace(
            "<name>", "<x:name>", 1).replace("</name>", "</x:name>", 1)
    # op 13: a whole different seed with a snippet
    return rng.choice(others) if others else text


def byte_level(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    op = rng.randrange(6)
    if op == 0 and buf:
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 1:
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = bytes([rng.choice([0, 0x80, 0xBF, 0xC0, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFE, 0xFF,
                                        ord("<"), ord(">"), ord("&"), ord("'"), ord("/"), ord(";")])])
    elif op == 2 and buf:
        a = rng.randrange(len(buf))
        del buf[a:a + rng.randrange(1, 16)]
    elif op == 3 and buf:
        a = rng.randrange(len(buf))
        buf[a] = rng.randrange(256)
    elif op == 4:
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = rng.choice([b"\xed\xa0\x80", b"\xc0\xaf", b"\xef\xbf\xbe", b"\xf4\x90\x80\x80", b"\r",
                                 b"\xe2\x80\xae", b"\x00\x00", "é".encode("utf-16")])
    else:
        a = rng.randrange(len(buf) + 1)
        b = min(len(buf), a + rng.randrange(1, 32))
        buf[a:a] = buf[a:b]
    return bytes(buf)


class Mutator:
    def __init__(self, seeds: list[bytes]) -> None:
        self.others = [s.decode("utf-8", "replace") for s in seeds]

    def __call__(self, data: bytes, max_size: int, seed: int, byte_mutate: Any = None) -> bytes:
        rng = random.Random(seed)
        for _ in range(rng.choice([1, 1, 2, 3])):
            if rng.random() < 0.55:
                text = structural(rng, data.decode("utf-8", "surrogateescape"), self.others)
                data = text.encode("utf-8", "surrogateescape")
            elif byte_mutate is not None:
                data = byte_mutate(data, max_size)
            else:
                data = byte_level(rng, data)
        return data[:max_size]


def load_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted(SEED_DIR.rglob("*.xml"))]


def write_dictionary(path: Path) -> None:
    tokens = set(TAGS) | set(ATTRS) | {v for v in VALUES if v and len(v) < 40} | {
        "<", ">", "</", "/>", "='", "'", "<!DOCTYPE", "<!ENTITY", "SYSTEM", "PUBLIC", "%", "&", ";", "<?xml",
        "?>", "<![CDATA[", "]]>", "<!--", "-->", "encoding=", "version="}
    lines = []
    for token in sorted(tokens):
        escaped = "".join(f"\\x{b:02x}" if b < 0x20 or b > 0x7E or b in (0x22, 0x5C) else chr(b)
                          for b in token.encode("utf-8"))
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n")


# -- engines ------------------------------------------------------------------------------------------
def run_atheris(args: argparse.Namespace) -> None:
    import atheris

    harness = Harness(args.seed, args.runs, instrument=True)
    mutator = Mutator(load_seeds())
    corpus = WORK / f"corpus-seed{args.seed}"
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    for i, seed in enumerate(load_seeds()):
        (corpus / f"seed-{i:03d}.xml").write_bytes(seed)
    dictionary = WORK / "xml.dict"
    write_dictionary(dictionary)
    FINDINGS.mkdir(parents=True, exist_ok=True)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutator(data, max_size, seed, byte_mutate=atheris.Mutate)

    libfuzzer_args = [sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}", f"-max_len={args.max_len}",
                      f"-dict={dictionary}", "-timeout=30", "-rss_limit_mb=4096", "-print_final_stats=1",
                      f"-artifact_prefix={FINDINGS}/libfuzzer-", "-close_fd_mask=0", str(corpus)]
    atheris.Setup(libfuzzer_args, harness.one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def run_builtin(args: argparse.Namespace) -> None:
    harness = Harness(args.seed, args.runs, instrument=False)
    seeds = load_seeds()
    mutator = Mutator(seeds)
    rng = random.Random(args.seed)
    pool = list(seeds)
    for data in seeds:
        harness.one_input(data)
    while harness.count < args.runs:
        data = mutator(rng.choice(pool), args.max_len, rng.getrandbits(64))
        harness.one_input(data)
        if len(pool) < 4096:
            pool.append(data)
        else:
            pool[rng.randrange(len(seeds), len(pool))] = data


# -- probes: large inputs the byte-level fuzzer never reaches ------------------------------------------
def probes() -> list[tuple[str, str]]:
    head = "<domainsnapshot><name>p</name>"
    out = [
        ("attributes-10k", "<domainsnapshot " + " ".join(f"a{i}='x'" for i in range(10_000)) + "><name>p</name>"
         "</domainsnapshot>"),
        ("attributes-20k", "<domainsnapshot " + " ".join(f"a{i}='x'" for i in range(20_000)) + "><name>p</name>"
         "</domainsnapshot>"),
        ("attributes-40k-nested", head + "<cookie><x " + " ".join(f"a{i}='x'" for i in range(40_000))
         + "/></cookie></domainsnapshot>"),
        ("disks-500k-10MB", head + "<disks>" + "<disk name='vda'/>" * 500_000 + "</disks></domainsnapshot>"),
        ("elements-1M", head + "<cookie>" + "<x/>" * 1_000_000 + "</cookie></domainsnapshot>"),
        ("text-9MB", head + "<description>" + "x" * 9_000_000 + "</description></domainsnapshot>"),
        ("text-nodes-500k", head + "<cookie>" + "x<y/>" * 500_000 + "</cookie></domainsnapshot>"),
        ("charrefs-1M", head + "<description>" + "&#233;" * 1_000_000 + "</description></domainsnapshot>"),
        ("depth-255", head + "<cookie>" + "<x>" * 254 + "</x>" * 254 + "</cookie></domainsnapshot>"),
        ("namespaces-10k", "<domainsnapshot " + " ".join(f"xmlns:n{i}='urn:{i}'" for i in range(10_000))
         + "><name>p</name></domainsnapshot>"),
        ("comments-1M", head + "<!---->" * 1_000_000 + "</domainsnapshot>"),
    ]
    return [(label, text) for label, text in out if len(text.encode()) <= 10 * 1024 * 1024]


def run_probes(args: argparse.Namespace) -> None:
    harness = Harness(args.seed, 0, instrument=False)
    sx = harness.snapshot_xml
    for label, text in probes():
        data = text.encode()
        for target, fn in [("parse-redefine", lambda t=text: sx.parse_snapshot(t, sx.ParseMode.REDEFINE)),
                           ("api-create", lambda t=text: harness.dom.snapshotCreateXML(t))]:
            started = time.perf_counter()
            ok = harness._call(target, fn, data)
            elapsed = time.perf_counter() - started
            if ok:
                harness._reset()
            flag = "  <-- over 1 s: finding" if elapsed > HANG_SECONDS else ""
            print(f"probe {label:22} {target:15} {len(data) / 1e6:5.1f} MB {elapsed:7.2f} s{flag}")
            if elapsed > HANG_SECONDS:
                harness._finding(f"hang-probe-{label}", data, f"{target}: {elapsed:.2f} s ({len(data)} bytes)")
    print(f"outcomes: { {k: dict(v) for k, v in harness.outcomes.items()} }")


def summary() -> None:
    total = Counter()
    findings: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    seconds = []
    for path in sorted(WORK.glob("stats-seed*.json")):
        s = json.loads(path.read_text())
        total["inputs"] += s["inputs"]
        seconds.append(s["seconds"])
        findings.update(s["findings"])
        for target, counts in s["outcomes"].items():
            outcomes[target].update(counts)
        print(f"seed {s['seed']}: {s['inputs']} inputs, {s['seconds']} s, {s['inputs_per_second']}/s, "
              f"slowest {s['slowest_input_seconds']} s")
    print(f"total: {total['inputs']} inputs; wall (parallel) {max(seconds, default=0)} s")
    for target, counts in sorted(outcomes.items()):
        print(f"  {target:15} {dict(counts.most_common())}")
    print(f"findings: {dict(findings.most_common()) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=16384)
    parser.add_argument("--engine", choices=["auto", "atheris", "builtin"], default="auto")
    parser.add_argument("--probes", action="store_true", help="time large hand-built inputs instead of fuzzing")
    parser.add_argument("--summary", action="store_true", help="add up the stats files of finished workers")
    args = parser.parse_args()
    sys.setrecursionlimit(10_000)
    if args.summary:
        summary()
        return
    if args.probes:
        run_probes(args)
        return
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401 - only probing
            engine = "atheris"
        except ImportError:
            engine = "builtin"
    print(f"engine: {engine}, seed {args.seed}, {args.runs} inputs", file=sys.stderr)
    if engine == "atheris":
        sys.argv = sys.argv[:1]  # libFuzzer gets its own arguments from run_atheris
        run_atheris(args)
    else:
        run_builtin(args)


if __name__ == "__main__":
    main()
