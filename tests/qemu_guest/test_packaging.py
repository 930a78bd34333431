"""`pip install virtsnap` as a newcomer does it: the wheel and sdist built from this tree, installed in a
fresh venv with no extras, then the installed `virtsnap` command run against test:///default and qemu:///session.

The built wheel and sdist are cached under ~/.cache/virtsnap/dist/<hash of the sources>/, and the wheels of
the core dependencies under ~/.cache/virtsnap/wheelhouse/<hash of the dependency list>/, so a rerun on an
unchanged tree builds nothing and installs offline (`--no-index`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import domain_xml

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "virtsnap"
# What goes into the sdist (and so the wheel): the hash of these decides whether the cached build is current.
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "src", "share", "bin")


def _source_hash() -> str:
    digest = hashlib.sha256()
    for top in SOURCES:
        path = ROOT / top
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.exists() or "__pycache__" in file.parts or file.suffix == ".pyc" or ".egg-info" in str(file):
                continue
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _build(srcdir: Path, outdir: Path, *kinds: str) -> None:
    # --no-isolation: the build backend comes from this venv (the test extra), so building needs no network.
    _run(sys.executable, "-m", "build", "--no-isolation", *kinds, "--outdir", outdir, srcdir, cwd=srcdir)


@pytest.fixture(scope="module")
def dist() -> Path:
    """The directory holding this tree's wheel and sdist, built once per source hash."""
    target = CACHE / "dist" / _source_hash()
    if not (target / "ok").exists():
        staging = Path(str(target) + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        # Build from a copy: `build` writes build/ and *.egg-info into the source tree it is given.
        src = staging / "src-copy"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "site", "*.egg-info", "__pycache__", ".hypothesis", "bench"))
        _build(src, staging, "--sdist", "--wheel")
        shutil.rmtree(src)
        (staging / "ok").touch()
        try:
            staging.rename(target)
        except OSError:  # another run built the same sources meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _wheelhouse() -> Path:
    """Wheels of the core dependencies, downloaded once per dependency list."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    target = CACHE / "wheelhouse" / hashlib.sha256("\n".join(sorted(deps)).encode()).hexdigest()[:16]
    if not (target / "ok").exists():
        target.mkdir(parents=True, exist_ok=True)
        _run(sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", target, *deps)
        (target / "ok").touch()
    return target


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel installed, without extras; its bin directory."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)  # this venv's pip installs into it (--python)
    wheel = next(dist.glob("virtsnap-*.whl"))
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-index",
         "--find-links", _wheelhouse(), wheel)
    return venv / "bin"


def _env(bindir: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bindir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    env["VIRTSNAP_QEMU_STATE_DIR"] = str(state)
    return env


def test_sdist_rebuilds_the_same_wheel(dist: Path, tmp_path: Path) -> None:
    """The sdist is complete: a wheel built from it alone holds exactly the files of the wheel built from git."""
    sdist = next(dist.glob("virtsnap-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    _build(unpacked, tmp_path / "out", "--wheel")
    wheels = (next(dist.glob("*.whl")), next((tmp_path / "out").glob("*.whl")))
    names = [sorted(zipfile.ZipFile(w).namelist()) for w in wheels]
    assert names[0] == names[1]
    assert "virtsnap/conf/schemas/domainsnapshot.rng" in names[0]
    for shipped in ("share/man/man1/virtsnap.1", "share/bash-completion/completions/virtsnap",
                    "share/zsh/site-functions/_virtsnap"):
        assert any(n.endswith(f".data/data/{shipped}") for n in names[0]), shipped


def test_installed_wheel_runs_the_test_driver(installed: Path, tmp_path: Path) -> None:
    env = _env(installed, tmp_path / "state")
    out = _run(installed / "virtsnap", "-c", "test:///default",
               "snapshot-create-as test s1; snapshot-list test --name", env=env)
    assert out.split() == ["Domain", "snapshot", "s1", "created", "s1"]
    # the installed package is the one imported (not this checkout through a path hook)
    where = _run(installed / "python", "-c", "import virtsnap; print(virtsnap.__file__)", env=env)
    assert where.startswith(str(installed.parent)), where
    table = _run(installed / "virtsnap", "-c", "test:///default", "snapshot-list test", env=env)
    assert table.splitlines()[0].split() == ["Name", "Creation", "Time", "State"]
    # the command is bin/virtsnap, run by the environment's interpreter: no wrapper importing `re` (and `enum`)
    # before virtsnap starts, ~13 M instructions of each cold start (issue 21)
    assert (installed / "virtsnap").read_text().startswith(f"#!{installed / 'python'}")
    traced = subprocess.run([installed / "python", "-X", "importtime", installed / "virtsnap", "-c", "test:///default",
                             "snapshot-list test"], env=env, capture_output=True, text=True, check=True)
    imported = {line.rpartition("|")[2].strip() for line in traced.stderr.splitlines()}
    assert "virtsnap.cli.main" in imported and not imported & {"re", "enum"}, sorted(imported & {"re", "enum"})
    # the man page and the completion scripts land under the environment's prefix
    man = subprocess.run(["man", "-l", installed.parent / "share" / "man" / "man1" / "virtsnap.1"],
                         capture_output=True, text=True, env=dict(env, MANWIDTH="80"), check=False)
    assert "snapshot-revert" in man.stdout, man.stderr
    assert (installed.parent / "share" / "bash-completion" / "completions" / "virtsnap").is_file()
    # found the way the docs say: man searches beside the bin/ directories of PATH; bash-completion's loader
    # (2.11 in Debian 12) searches $XDG_DATA_DIRS, so a venv's share/ is added there
    where = _run("man", "-w", "virtsnap", env=env).strip()
    assert where == str(installed.parent / "share" / "man" / "man1" / "virtsnap.1")
    loaded = _run("bash", "--norc", "-c", "source /usr/share/bash-completion/bash_completion; "
                  "__load_completion virtsnap; complete -p virtsnap",
                  env=dict(env, XDG_DATA_DIRS=f"{installed.parent / 'share'}:/usr/local/share:/usr/share"))
    assert "-F _virtsnap" in loaded


def test_installed_wheel_runs_qemu_without_extras(installed: Path, guest, workdir: Path) -> None:
    """No `[qemu]` extra: a defined domain lists, starts, shows as running, and stops through the installed CLI."""
    env = _env(installed, workdir / "state")
    xml = workdir / "pkg.xml"
    xml.write_text(domain_xml(guest, workdir, name="pkg", memory_mib=128, agent=False))
    virtsnap = installed / "virtsnap"
    _run(virtsnap, "-c", "qemu:///session", "define", xml, env=env)
    try:
        assert "pkg" in _run(virtsnap, "-c", "qemu:///session", "list --all", env=env)
        _run(virtsnap, "-c", "qemu:///session", "start pkg", env=env)
        listing = _run(virtsnap, "-c", "qemu:///session", "list", env=env)
        assert [line.split()[1:] for line in listing.splitlines()[2:] if line.strip()] == [["pkg", "running"]]
        assert _run(virtsnap, "-c", "qemu:///session", "domstate pkg", env=env).strip() == "running"
    finally:
        subprocess.run([virtsnap, "-c", "qemu:///session", "destroy pkg"], env=env, capture_output=True, check=False)
    assert _run(virtsnap, "-c", "qemu:///session", "domstate pkg", env=env).strip() == "shut off"


def test_missing_esx_dependency_names_the_extra(installed: Path, tmp_path: Path) -> None:
    """Without pyvmomi (not a core dependency) an esx:// connection fails with the extra to install."""
    proc = subprocess.run([installed / "virtsnap", "-c", "esx://127.0.0.1/?no_verify=1", "list"],
                          capture_output=True, text=True, env=_env(installed, tmp_path / "state"), check=False)
    assert proc.returncode == 1
    assert "pip install 'virtsnap[esx]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_web_extra_names_it(installed: Path, dist: Path, tmp_path: Path) -> None:
    """The web view's files ship in the wheel; without Starlette and uvicorn `virtsnap serve` says what to install."""
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert {"virtsnap/web/static/index.html", "virtsnap/web/static/app.js", "virtsnap/web/static/app.css"} <= set(names)
    proc = subprocess.run([installed / "virtsnap", "serve", "-c", "test:///default"],
                          capture_output=True, text=True, env=_env(installed, tmp_path / "state"), check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("error: virtsnap serve needs the 'web' extra: pip install 'virtsnap[web]' "
                           "(missing: starlette, uvicorn)\n")
