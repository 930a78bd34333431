"""Shell completion: the hidden `complete` command against virsh 9.0's, and the bash and zsh scripts run by
real shells on a qemu:///session connection with a real domain and snapshots (qemu-img, no guest)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_offline import define_offline

from virtsnap.cli.registry import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
BASH_SCRIPT = ROOT / "share" / "bash-completion" / "completions" / "virtsnap"
ZSH_SCRIPT = ROOT / "share" / "zsh" / "site-functions" / "_virtsnap"
BIN = Path(sys.executable).parent  # the venv's virtsnap command


def _lines(args: list[str], program: str = str(BIN / "virtsnap")) -> list[str]:
    proc = subprocess.run([program, *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def _complete(*words: str, uri: str = "test:///default") -> list[str]:
    return _lines(["-c", uri, "complete", "--", *words])


def _in_order(expected: list[str], got: list[str]) -> bool:
    """`expected` is `got` without virtsnap's own additions (extension commands and options)."""
    return [c for c in got if c in set(expected)] == expected and set(expected) <= set(got)


SAME_AS_VIRSH = [
    ("snap",), ("snapshot-list", "--"), ("snapshot-list", "--dom"), ("snapshot-list", "test", "--tree", "--"),
    ("snapshot-create-as", "--"), ("snapshot-revert", "test", "--"), ("snapshot-delete", "test", "--c"),
    ("snapshot-current", "--"), ("snapshot-info", "--"), ("snapshot-dumpxml", "--"), ("snapshot-edit", "--"),
    ("echo", ""), ("help", ""), ("list", "--"), ("start", "--"), ("dumpxml", "test", "--"),
]


@pytest.mark.parametrize("words", SAME_AS_VIRSH, ids=" ".join)
def test_complete_matches_virsh(words: tuple[str, ...]) -> None:
    """Commands and options as virsh 9.0 lists them, in its order; virtsnap's extensions may be added."""
    virsh = _lines(["-c", "test:///default", "complete", "--", *words], program="virsh")
    ours = _complete(*words)
    assert _in_order(virsh, ours), (virsh, ours)


def test_complete_hides_the_hidden_and_lists_extensions() -> None:
    commands = _complete("")
    assert commands == [name for name, cmd in COMMANDS.items() if not cmd.hidden] + ["serve"]
    assert "complete" not in commands and "snapshot-check" in commands
    assert _complete("snapshot-list", "test", "--j") == ["--json"]
    assert _complete("nosuchcommand", "") == commands  # as virsh: an unknown command completes as no command
    # `serve` (the web server, outside the command tables) completes its own options
    assert _complete("serve", "--") == ["--connect", "--listen", "--readonly", "--allow-remote"]
    assert _complete("serve", "--listen", "") == []


def test_complete_names_on_the_test_driver() -> None:
    """Domain names for a domain option, the domain's snapshots for a snapshot option (one process's chain)."""
    out = _lines(["-c", "test:///default", "snapshot-create-as test s1; snapshot-create-as test s2 --no-metadata;"
                  "snapshot-create-as test t3; complete -- 'snapshot-revert test s'"])
    assert out[-2:] == ["Domain snapshot t3 created", "s1"]  # s2 has no metadata: not listed
    assert _complete("snapshot-list", "--domain", "") == ["test"]
    assert _complete("snapshot-list", "t") == ["test"]
    assert _complete("snapshot-info", "nosuchdomain", "--snapshotname", "") == []


@pytest.fixture
def qemu_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """qemu:///session with two domains; `web` has snapshots before-upgrade and clean (made by qemu-img)."""
    state = tmp_path / "state"
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(state))
    conn, dom, _ = define_offline(tmp_path, "web")
    for name in ("before-upgrade", "clean"):
        dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
    (tmp_path / "w2").mkdir()
    define_offline(tmp_path / "w2", "worker")[0].close()
    conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRSH_", "BASH_"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    env["VIRTSNAP_QEMU_STATE_DIR"] = str(state)
    return env


def _bash(env: dict[str, str], line: str, helpers: bool = True) -> list[str]:
    """Complete `line` (cursor at its end) as bash does on TAB, with or without bash-completion's helpers."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = f"""
        {"source /usr/share/bash-completion/bash_completion" if helpers else ""}
        source {shlex.quote(str(BASH_SCRIPT))}
        COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}
        COMP_WORDS=({" ".join(shlex.quote(w) for w in words)}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
        COMPREPLY=()
        $(complete -p virtsnap | sed -E 's/.* -F ([^ ]+) .*/\\1/') virtsnap "${{COMP_WORDS[COMP_CWORD]}}" \
            "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completion_lists_names_of_the_connection(qemu_env: dict[str, str]) -> None:
    assert _bash(qemu_env, "virtsnap snapshot-l") == ["snapshot-list"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-revert ") == [
        "web", "worker", "--domain", "--snapshotname", "--current", "--running", "--paused", "--force",
        "--reset-nvram"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-revert w") == ["web", "worker"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-revert web ") == [
        "before-upgrade", "clean", "--snapshotname", "--current", "--running", "--paused", "--force",
        "--reset-nvram"]
    assert _bash(qemu_env, "virtsnap --connect=qemu:///session -r snapshot-delete --domain web --snapshotname b") \
        == ["before-upgrade"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-list web --from ") == ["before-upgrade", "clean"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-list web --tr") == ["--tree"]
    assert _bash(qemu_env, "virtsnap --rea") == ["--readonly"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-revert web c", helpers=False) == ["clean"]
    assert _bash(qemu_env, "virtsnap -c qemu:///session snapshot-revert ", helpers=False)[:2] == ["web", "worker"]
    # a connection that cannot be made still completes commands and options, and prints nothing
    assert _bash(qemu_env, "virtsnap -c nosuch:///x snapshot-revert --c") == ["--current"]
    assert _bash(qemu_env, "virtsnap -c nosuch:///x snapshot-revert ") == [
        "--domain", "--snapshotname", "--current", "--running", "--paused", "--force", "--reset-nvram"]


def test_zsh_completion_lists_names_of_the_connection(qemu_env: dict[str, str], tmp_path: Path) -> None:
    """The zsh function with compadd/_files recorded instead of drawn (zsh's completion widgets need a terminal)."""
    def zsh(*words: str) -> list[str]:
        script = f"""
            compadd() {{ while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; print -l -- "$@"; }}
            _files() {{ print -- FILES; }}
            words=({" ".join(shlex.quote(w) for w in words)}); CURRENT={len(words)}
            source {shlex.quote(str(ZSH_SCRIPT))}
        """
        proc = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=qemu_env, check=False)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return proc.stdout.splitlines()

    assert zsh("virtsnap", "-c", "qemu:///session", "snapshot-revert", "web", "c") == ["clean"]
    assert zsh("virtsnap", "-c", "qemu:///session", "snapshot-list", "--domain", "") == ["web", "worker"]
    assert zsh("virtsnap", "snapshot-cu") == ["snapshot-current"]
    assert zsh("virtsnap", "--con") == ["--connect", "--debug", "--escape", "--help", "--keepalive-interval",
                                        "--keepalive-count", "--log", "--quiet", "--readonly", "--timing",
                                        "--version", "-c", "-d", "-e", "-h", "-k", "-K", "-l", "-q", "-r", "-t",
                                        "-v", "-V"]  # zsh itself filters compadd's words by the prefix
    assert zsh("virtsnap", "define", "/tm") == ["FILES"]
