"""virsh's command grammar as virtsnap's CLI parses it: tokenizer, option tables, chain rules, exit codes."""

import pytest

from virtsnap.cli import main as cli_main
from virtsnap.cli.parser import (
    END,
    SUBCMD_END,
    ArgvTokenizer,
    Command,
    ParseError,
    StringTokenizer,
    argv,
    data,
    flag,
    parse_chain,
    string,
    tokenize,
)
from virtsnap.cli.registry import find_command
from virtsnap.cli.table import Table, render_forest, render_tree, safe_encode

URI = "test:///default"


def words(text):
    """The argument tokens of a command string, with '|' for command separators."""
    out = []
    for kind, value in tokenize(text):
        if kind == END:
            break
        out.append("|" if kind == SUBCMD_END else value)
    return out


def parse(text):
    return parse_chain(StringTokenizer(text), find_command, "help")


def opts_of(invocation):
    return [(o.name, v) for o, v in invocation.opts.items]


# -- tokenizer ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("a b\tc", ["a", "b", "c"]),
    ("  a   b  ", ["a", "b"]),
    ("'a b' \"c d\"", ["a b", "c d"]),
    ("x'a b'y", ["xa by"]),
    (r"a\ b", ["a b"]),
    (r"'a\b'", [r"a\b"]),                  # no escapes inside single quotes
    (r'"a\"b"', ['a"b']),                  # but inside double quotes
    (r'"it'"'"'s"', ["it's"]),
    ('"\'"', ["'"]),
    ("a;b", ["a", "|", "b"]),
    ("a ; b", ["a", "|", "b"]),
    ("'a;b' \"c;d\" e\\;f", ["a;b", "c;d", "e;f"]),
    ("a\nb", ["a", "|", "b"]),
    ("a\\\nb", ["ab"]),                    # backslash-newline is elided
    ("a \\\n b", ["a", "b"]),
    ("a # comment ; still comment\nb", ["a", "|", "b"]),
    ("a#b", ["a#b"]),                      # '#' only starts a comment at a token start
    ("'#a' b", ["#a", "b"]),
    ("'unterminated single", ["unterminated single"]),  # virsh accepts it
    ('""', [""]),
    ("", []),
])
def test_tokenizer(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize("text, message", [
    ('echo "open', 'missing "'),
    ("echo a\\", "dangling \\"),
])
def test_tokenizer_errors(text, message):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert info.value.messages == [message]


def test_argv_tokenizer_takes_words_verbatim():
    chain = parse_chain(ArgvTokenizer(["echo", "a b", "; c", "'d'"]), find_command)
    assert len(chain) == 1
    assert chain[0].opts.argv("string") == ["a b", "; c", "'d'"]


def test_argv_comment_word_swallows_the_rest():
    assert parse_chain(ArgvTokenizer(["#x", "echo", "y"]), find_command) == []


# -- option grammar -----------------------------------------------------------------------------------
def test_positional_fill_in_declaration_order():
    (inv,) = parse("snapshot-create-as test n1 d1")
    assert opts_of(inv) == [("domain", "test"), ("name", "n1"), ("description", "d1")]


def test_positional_skips_options_given_by_name():
    (inv,) = parse("snapshot-create-as --name n1 test d1")
    assert opts_of(inv) == [("name", "n1"), ("domain", "test"), ("description", "d1")]


def test_surplus_data_lands_in_the_argv_option():
    (inv,) = parse("snapshot-create-as test n d vda vdb --diskspec vdc")
    assert inv.opts.argv("diskspec") == ["vda", "vdb", "vdc"]


def test_req_opt_string_is_never_positional():
    (inv,) = parse("snapshot-create-as test n d --memspec /m x")
    assert inv.opts.value("memspec") == "/m"
    assert inv.opts.argv("diskspec") == ["x"]


def test_option_equals_value_and_separate_value():
    (inv,) = parse("snapshot-list --domain=test --from=a=b")
    assert opts_of(inv) == [("domain", "test"), ("from", "a=b")]
    (inv,) = parse("snapshot-list --domain test --from --tree")
    assert inv.opts.value("from") == "--tree"  # a string option takes the next word, whatever it is


def test_double_dash_makes_everything_data():
    (inv,) = parse("echo -- --err --x")
    assert inv.opts.argv("string") == ["--err", "--x"]
    assert not inv.opts.has("err")


def test_words_that_are_not_options_are_data():
    (inv,) = parse("echo -x --- --_y")
    assert inv.opts.argv("string") == ["-x", "---", "--_y"]
    with pytest.raises(ParseError) as info:
        parse("echo --1")  # a digit after -- still names an option
    assert info.value.messages == ["command 'echo' doesn't support option --1"]


def test_aliases():
    (inv,) = parse("echo --hi --str x")
    assert inv.opts.argv("string") == ["hello", "x"]
    with pytest.raises(ParseError) as info:
        parse("echo --hi=x")
    assert info.value.messages == ["invalid '=' after option --hi"]


def test_help_option_becomes_help_command():
    (inv,) = parse("snapshot-list --help")
    assert inv.command.name == "help"
    assert inv.opts.value("command") == "snapshot-list"


def test_help_ignores_unknown_options_and_data():
    (inv,) = parse("help --bogus snapshot-list extra")
    assert inv.opts.value("command") == "snapshot-list"


def test_chain_of_several_commands():
    chain = parse("echo a; echo b\necho c ;; # comment\n")
    assert [inv.opts.argv("string") for inv in chain] == [["a"], ["b"], ["c"]]


@pytest.mark.parametrize("text, messages", [
    ("snapshot-bogus test", ["unknown command: 'snapshot-bogus'"]),
    ("snapshot-list test --bogus", ["command 'snapshot-list' doesn't support option --bogus"]),
    ("snapshot-create-as test n1 --name n2", ["option --name already seen"]),
    ("snapshot-list test --tree --tree", ["option --tree already seen"]),
    ("snapshot-list test --tree=1", ["invalid '=' after option --tree"]),
    ("snapshot-list test --from", ["expected syntax: --from <string>"]),
    ("snapshot-list test --from; echo", ["expected syntax: --from <string>"]),
    ("snapshot-info test a extra", ["unexpected data 'extra'"]),
    ("snapshot-dumpxml test", ["command 'snapshot-dumpxml' requires <snapshotname> option"]),
    ("snapshot-dumpxml", ["command 'snapshot-dumpxml' requires <domain> option",
                          "command 'snapshot-dumpxml' requires <snapshotname> option"]),
    ("echo ok; snapshot-list", ["command 'snapshot-list' requires <domain> option"]),
])
def test_parse_errors(text, messages):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert info.value.messages == messages


def test_repeated_argv_option_by_name_is_allowed():
    (inv,) = parse("snapshot-create-as test --diskspec a --diskspec b")
    assert inv.opts.argv("diskspec") == ["a", "b"]


def test_option_table_checks_argv_last():
    with pytest.raises(ValueError):
        Command("bad", lambda ctl, opts: True, [argv("rest", ""), flag("x", "")], "")


def test_custom_table():
    table = [data("first", ""), string("second", ""), string("third", "", positional=False), flag("b", "")]
    command = Command("t", lambda ctl, opts: True, table, "")
    (inv,) = parse_chain(StringTokenizer("t 1 2 --b --third 3"), {"t": command}.get)
    assert opts_of(inv) == [("first", "1"), ("second", "2"), ("b", None), ("third", "3")]


# -- whole runs ---------------------------------------------------------------------------------------
def run(capsys, *argv):
    status = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_parse_error_rejects_the_whole_chain(capsys):
    status, out, err = run(capsys, "-c", URI, "snapshot-create-as test s1; echo hi; snapshot-bogus")
    assert (status, out, err) == (1, "", "error: unknown command: 'snapshot-bogus'\n")


def test_exit_status_is_the_last_commands(capsys):
    status, _out, err = run(capsys, "-c", URI, "snapshot-info test nosuch; echo fine")
    assert status == 0
    assert err == "error: Domain snapshot not found: no domain snapshot with matching name 'nosuch'\n"
    status, _, _ = run(capsys, "-c", URI, "echo fine; snapshot-info test nosuch")
    assert status == 1


def test_quoting_reaches_the_api(capsys):
    status, out, err = run(capsys, "-c", URI,
                           "snapshot-create-as test 'three four' --description \"it's \\\"quoted\\\"\";"
                           " snapshot-list test --name; snapshot-dumpxml test 'three four' --xpath //description")
    assert status == 0, err
    assert out == ("Domain snapshot three four created\n"
                   "three four\n\n"
                   "<description>it's \"quoted\"</description>\n\n")


def test_argv_mode(capsys):
    status, out, _ = run(capsys, "-c", URI, "snapshot-create-as", "test", "a b")
    assert (status, out) == (0, "Domain snapshot a b created\n")


def test_quiet_drops_extra_output(capsys):
    status, out, _ = run(capsys, "-q", "-c", URI, "snapshot-create-as test s1; snapshot-current test --name")
    assert (status, out) == (0, "s1")


def test_global_option_errors(capsys):
    assert run(capsys, "-x") == (1, "", "error: unsupported option '-x'. See --help.\n")
    assert run(capsys, "--connect") == (1, "", "error: option '-c'/'--connect' requires an argument\n")
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip()
    status, out, _ = run(capsys, "-h")
    assert status == 0 and "snapshot-list" in out


def test_unexpected_exception_is_one_line(capsys, monkeypatch):
    def boom(ctl, opts):
        raise RuntimeError("kaput")

    monkeypatch.setattr(find_command("snapshot-list"), "handler", boom)
    status, _out, err = run(capsys, "-c", URI, "snapshot-list test")
    assert status == 1
    assert err == "error: internal error: RuntimeError: kaput\n"


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    def interrupted(ctl, opts):
        raise KeyboardInterrupt

    monkeypatch.setattr(find_command("snapshot-list"), "handler", interrupted)
    status, _, err = run(capsys, "-c", URI, "snapshot-list test; echo never")
    assert status == 130
    assert err == "error: interrupted\n"


def test_connection_failure(capsys):
    status, out, err = run(capsys, "-c", "bogus:///x", "echo hi")
    assert status == 1 and out == ""
    assert err.startswith("error: failed to connect to the hypervisor\nerror: ")


# -- tables and trees ---------------------------------------------------------------------------------
def test_table_layout_and_quiet():
    table = Table("Name", "State", "Parent")
    table.add("a", "running", "")
    table.add("long-name", "shutoff", "a")
    assert table.render() == (" Name        State     Parent\n"
                              "-------------------------------\n"
                              " a           running   \n"
                              " long-name   shutoff   a\n")
    assert table.render(header=False) == " a           running   \n long-name   shutoff   a\n"


def test_empty_table_keeps_header():
    assert Table("Name", "Creation Time", "State").render() == (
        " Name   Creation Time   State\n-------------------------------\n")


@pytest.mark.parametrize("text, utf8, encoded, width", [
    ("plain", True, "plain", 5),
    ("a\tb", True, "a\\x09b", 6),
    ("x\\xy", True, "x\\x5cxy", 7),
    ("\u00e9", True, "\u00e9", 1),
    ("\u65e5\u672c", True, "\u65e5\u672c", 4),
    ("e\u030a", True, "e\u030a", 1),
    ("\u00e9", False, "\\xff\\xff", 8),  # C locale: each byte, as virsh's truncated %02x prints it
])
def test_safe_encode(text, utf8, encoded, width):
    assert safe_encode(text, utf8) == (encoded, width)


def test_tree():
    names = ["a", "b", "c", "d"]
    parents = [None, "a", "a", "b"]
    assert render_tree(names, parents, 0) == (
        "a\n  |\n  +- b\n  |   |\n  |   +- d\n  |     \n  +- c\n    \n")
    assert render_tree(["x"], [None], 0) == "x\n\n"


def _reference_tree(names, parents, devid, lastdev, root, indent, out):
    """vshTreePrintInternal, recursively as virsh writes it."""
    out.append(indent + ("" if root else "+- ") + names[devid] + "\n")
    if not root:
        indent += (" " if devid == lastdev else "|") + " "
    kids = [i for i, parent in enumerate(parents) if parent == names[devid]]
    if kids:
        out.append(indent + "  |\n")
    for kid in kids:
        _reference_tree(names, parents, kid, kids[-1], False, indent + "  ", out)
    if not kids and devid == lastdev:
        out.append(indent + "\n")


@pytest.mark.parametrize("seed", range(30))
def test_forest_matches_virsh_algorithm(seed):
    import random

    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randrange(1, 40))]
    parents = [None if i == 0 or rng.random() < 0.15 else names[rng.randrange(i)] for i in range(len(names))]
    order = list(range(len(names)))
    rng.shuffle(order)  # children are printed in list order, whatever it is
    names, parents = [names[i] for i in order], [parents[i] for i in order]
    expected: list[str] = []
    for i, parent in enumerate(parents):
        if parent is None:
            _reference_tree(names, parents, i, i, True, "", expected)
    assert render_forest(names, parents) == "".join(expected)


def test_deep_tree_does_not_recurse():
    n = 5000
    names = [f"s{i}" for i in range(n)]
    parents = [None, *names[:-1]]
    text = render_tree(names, parents, 0)
    assert text.count("+- ") == n - 1


HEAVY = ("lxml", "dataclasses", "inspect", "xml.etree", "uuid", "subprocess", "socket", "signal", "json", "rich",
         "qemu", "pyVmomi", "unicodedata", "tempfile", "importlib.resources", "asyncio")


def _heavy_modules_after(argv, env=None):
    import os
    import subprocess
    import sys

    code = ("import sys, io, contextlib; from virtsnap.cli.main import main; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): status = main(sys.argv[1:])\n"
            f"print(status, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    return out.strip()


def test_listing_commands_import_only_what_they_need(tmp_path):
    """Cold start: snapshot-list and snapshot-current load no XML library (the listing comes from the tree,
    stored XML is read with expat), no dataclasses/inspect, no JSON, process, signal or socket modules."""
    import virtsnap

    for argv in (["-c", "test:///default", "snapshot-list", "test"],
                 ["-c", "test:///default", "snapshot-list", "test", "--tree"],
                 ["-c", "test:///default", "snapshot-current", "test"]):  # none yet: an error, status 1
        assert _heavy_modules_after(argv).split(" ", 1)[1] == "[]", argv
    env = {"VIRTSNAP_QEMU_STATE_DIR": str(tmp_path / "state")}  # the disk outside it
    import os

    os.environ.update(env)
    try:
        with virtsnap.open("qemu:///session") as conn:
            dom = conn.defineXML(
                "<domain type='qemu'><name>q</name><memory unit='KiB'>131072</memory><vcpu>1</vcpu>"
                "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>"
                f"<driver name='qemu' type='qcow2'/><source file='{tmp_path}/q.qcow2'/><target dev='vda'/>"
                "</disk></devices></domain>")
            for i in range(3):
                parent = f"<parent><name>s{i - 1}</name></parent>" if i else ""
                dom.snapshotCreateXML(
                    f"<domainsnapshot><name>s{i}</name><state>shutoff</state>{parent}<creationTime>{i + 1}"
                    f"</creationTime><memory snapshot='no'/><disks><disk name='vda' snapshot='internal'/></disks>"
                    f"{dom.XMLDesc()}</domainsnapshot>", virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
                    | virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT * (i == 2))
    finally:
        del os.environ["VIRTSNAP_QEMU_STATE_DIR"]
    for argv in (["-c", "qemu:///session", "snapshot-list", "q"],
                 ["-c", "qemu:///session", "snapshot-list", "q", "--tree"],
                 ["-c", "qemu:///session", "snapshot-current", "q"]):
        assert _heavy_modules_after(argv, env) == "0 []", argv


def test_cli_import_stays_light():
    """Cold start: the CLI modules pull in no heavy or command-specific module at import time."""
    import subprocess
    import sys

    code = ("import sys, virtsnap.cli.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lxml', 'rich', 'click', 'json', 'subprocess', 'unicodedata', 'xml', 'tempfile')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_positional_string_option_fills_like_virsh():
    (inv,) = parse("snapshot-list test s1")
    assert inv.opts.value("from") == "s1"  # --from is a plain string option, so data fills it
