"""Scenario tests: virsh command chains, virtsnap's CLI against real virsh.

Every ``chains/*.txt`` file is one scenario.  It is run through
``virsh -c test:///default [opts] '<chain>'`` and through
``virtsnap -c test:///default [opts] '<chain>'``; stdout, stderr and the exit
status must be identical after masking (see ``mask``).  Drop a new file into
chains/ to add a scenario.

Chain file format (plain text, one virsh command per line):

  # ...            a line starting with '#' in column 0 is a file comment and
                   is not sent; indented '#' lines ARE sent (virsh treats them
                   as comments, so the CLI under test must as well)
  @@ run [opts]    starts a new process (the test driver's state is lost
                   between processes); opts, e.g. ``-q`` or ``-r``, go between
                   ``-c URI`` and the chain.  A file that does not begin with
                   ``@@ run`` gets an implicit first run without options.
  @@ capture FILE  the next command's stdout is also written to FILE in the
                   run's working directory once the run has ended, so a LATER
                   run can read it (e.g.
                   ``snapshot-create test --redefine FILE``).  Implemented with
                   ``echo`` markers around the command, which stay in stdout.
  anything else    a command line, sent as is; lines of a run are joined with
                   newlines into the single chain argument.

Each side runs in its own fresh temporary directory (the cwd, where captured
files live), with C locale, UTC, private XDG directories and libvirt's own
logging limited to errors (LIBVIRT_DEBUG=4) so that library warnings with
timestamps and PIDs do not land in stderr.

Environment knobs:

  VIRTSNAP_SCENARIO_CMD  candidate executable (default: the ``virtsnap``
                         console script next to sys.executable, else
                         ``sys.executable -m virtsnap``).  Set it to
                         ``virsh`` to check that every chain is deterministic
                         (virsh against itself).
  VIRTSNAP_SCENARIO_REF  reference executable (default ``virsh``).
"""

import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHAINS = sorted((HERE / "chains").glob("*.txt"))
URI = "test:///default"
TIMEOUT = 120
CAPTURE_BEGIN = "VIRTSNAP-CAPTURE-BEGIN-"
CAPTURE_END = "VIRTSNAP-CAPTURE-END-"
CAPTURE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")

# Masks applied to stdout and stderr of both sides, in order.
MASKS = [
    # snapshot-list "Creation Time" column: wall-clock time.
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}"), "TIMESTAMP"),
    (re.compile(r"<creationTime>\d+</creationTime>"), "<creationTime>MASKED</creationTime>"),
    # dominfo: the test driver reports the time of day as CPU time.
    (re.compile(r"(CPU time:\s+)\d+(\.\d+)?s"), r"\1MASKEDs"),
    # Default snapshot names are the creation time in Unix seconds.
    (re.compile(r"(?<![0-9])1\d{9}(?![0-9])"), "EPOCH"),
]


def parse_chain(path):
    """Split a chain file into runs: [(options, [lines], {index: file})]."""
    runs = []
    pending_capture = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("#"):
            continue
        if raw.startswith("@@"):
            words = raw[2:].split()
            if words and words[0] == "run":
                runs.append((words[1:], [], {}))
            elif len(words) == 2 and words[0] == "capture":
                if not CAPTURE_NAME_RE.match(words[1]):
                    raise ValueError("%s: bad capture file name %r" % (path, words[1]))
                pending_capture = words[1]
            else:
                raise ValueError("%s: unknown directive %r" % (path, raw))
            continue
        if not runs:
            runs.append(([], [], {}))
        if not raw.strip():
            continue
        options, lines, captures = runs[-1]
        if pending_capture:
            captures[len(lines)] = pending_capture
            pending_capture = None
        lines.append(raw)
    if pending_capture:
        raise ValueError("%s: @@ capture %s is not followed by a command"
                         % (path, pending_capture))
    return runs


def chain_text(lines, captures):
    """The chain argument: lines joined by newlines, captures wrapped."""
    out = []
    for index, line in enumerate(lines):
        if index in captures:
            out.append("echo " + CAPTURE_BEGIN + captures[index])
            out.append(line)
            out.append("echo " + CAPTURE_END + captures[index])
        else:
            out.append(line)
    return "\n".join(out)


def extract_captures(stdout, captures, cwd):
    """Write each captured command's stdout to its file in cwd."""
    for name in captures.values():
        begin = stdout.find(CAPTURE_BEGIN + name + "\n")
        end = stdout.find(CAPTURE_END + name + "\n")
        if begin < 0 or end < begin:
            # Leave no file: the next run then fails the same way on both
            # sides only if both failed to print the markers, which the
            # stdout comparison reports anyway.
            continue
        body = stdout[begin + len(CAPTURE_BEGIN + name + "\n"):end]
        (cwd / name).write_text(body, encoding="utf-8")


def mask(text, tmpdir):
    """Hide what legitimately differs between two runs (see MASKS)."""
    text = text.replace(str(tmpdir), "<TMPDIR>")
    for pattern, repl in MASKS:
        text = pattern.sub(repl, text)
    return text


def candidate_command():
    """The CLI under test as an argument-list prefix."""
    override = os.environ.get("VIRTSNAP_SCENARIO_CMD")
    if override:
        return [override]
    script = Path(sys.executable).parent / "virtsnap"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "virtsnap"]


def reference_command():
    return [os.environ.get("VIRTSNAP_SCENARIO_REF", "virsh")]


def make_env(base):
    """A clean, deterministic environment rooted in the private dir base."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIBVIRT_", "VIRSH_", "LC_", "XDG_"))
           and k not in ("LANG", "LANGUAGE", "TZ")}
    env.update({
        # libvirt-l10n is installed: messages would be translated otherwise.
        "LC_ALL": "C", "LANG": "C",
        "TZ": "UTC",
        # libvirt prints its own warnings (with time and PID) to stderr.
        "LIBVIRT_DEBUG": "4",
        "HOME": str(base / "home"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "XDG_RUNTIME_DIR": str(base / "runtime"),
    })
    # `python -m virtsnap` from a checkout before `pip install -e .`;
    # appended so that an explicit PYTHONPATH still wins.
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts + [str(REPO / "src")])
    return env


def run_chain(command, runs):
    """Run all runs of a chain with one CLI; return masked per-run results."""
    base = Path(tempfile.mkdtemp(prefix="virtsnap-scenario-"))
    try:
        cwd = base / "cwd"
        for sub in ("cwd", "home", "config", "cache", "runtime"):
            (base / sub).mkdir(mode=0o700)
        env = make_env(base)
        results = []
        for options, lines, captures in runs:
            argv = command + ["-c", URI] + options + [chain_text(lines, captures)]
            proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False)
            extract_captures(proc.stdout, captures, cwd)
            results.append({"stdout": mask(proc.stdout, base),
                            "stderr": mask(proc.stderr, base),
                            "exit": proc.returncode})
        return results
    finally:
        shutil.rmtree(base, ignore_errors=True)


def describe(run_index, options, lines, expected, actual, max_lines=150):
    """A readable failure: the chain, then every differing field of the run.

    Exit status and stderr come first: when the candidate crashes they say
    why, while the stdout diff would only show missing output.
    """
    parts = ["run #%d (options: %s) differs; chain:" % (run_index, " ".join(options) or "none")]
    parts += ["  " + line for line in lines]
    if expected["exit"] != actual["exit"]:
        parts.append("exit status: reference %d, candidate %d"
                     % (expected["exit"], actual["exit"]))
    for field in ("stderr", "stdout"):
        if expected[field] != actual[field]:
            diff = list(difflib.unified_diff(
                expected[field].splitlines(), actual[field].splitlines(),
                "reference " + field, "candidate " + field, lineterm=""))
            if len(diff) > max_lines:
                diff = diff[:max_lines] + ["... (%d more diff lines)" % (len(diff) - max_lines)]
            parts.append("\n".join(diff))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def reference_ready():
    if shutil.which(reference_command()[0]) is None:
        pytest.fail("%s not found: `make setup` installs Debian's libvirt-clients" % reference_command()[0])


@pytest.mark.parametrize("chain", CHAINS, ids=[p.stem for p in CHAINS])
def test_chain_matches_virsh(chain, reference_ready):
    """stdout, stderr and exit status equal virsh's after masking."""
    runs = parse_chain(chain)
    expected = run_chain(reference_command(), runs)
    actual = run_chain(candidate_command(), runs)
    for index, ((options, lines, _), exp, act) in enumerate(zip(runs, expected, actual)):
        if exp != act:
            pytest.fail(describe(index, options, lines, exp, act), pytrace=False)


def test_chain_files_parse():
    """Every chain file is well formed and has at least one command."""
    assert CHAINS, "no chain files found in %s" % (HERE / "chains")
    for chain in CHAINS:
        runs = parse_chain(chain)
        assert runs and all(lines for _, lines, _ in runs), chain
