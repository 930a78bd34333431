"""`ansible-test sanity` on the virtsnap.virtsnap collection (a copy, so that its output stays out of the tree),
with this interpreter and no container: every test of the default set, their pinned requirement environments
built by pip from the package index and cached under ~/.cache/virtsnap/ansible-test/<ansible-core version>/.

ansible-test bootstraps pip in each environment with a script it downloads from ci-files.testing.ansible.com,
which CI machines cannot reach: a stand-in at the path it caches that script to runs `pip install` from the pip
wheel pip itself downloaded (the same pip version ansible-test pins)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

COLLECTION = ROOT / "ansible_collections" / "virtsnap" / "virtsnap"
# The tests that must run (and pass); pslint and shellcheck have no files to look at in this collection.
MUST_RUN = {"action-plugin-docs", "ansible-doc", "compile", "empty-init", "ignores", "import", "line-endings",
            "no-assert", "no-get-exception", "no-illegal-filenames", "no-smart-quotes", "pep8", "pylint",
            "replace-urlopen", "runtime-metadata", "shebang", "symlinks", "use-argspec-type-path",
            "use-compat-six", "validate-modules", "yamllint"}
STAND_IN = '''import sys
sys.path.insert(0, {wheel!r})
from pip._internal.cli.main import main
# get-pip's own options (it installs no setuptools or wheel when told so; this never does)
sys.exit(main(["install", *[a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]]))
'''


def _home() -> Path:
    """ansible-test's HOME: its cached environments, and the pip bootstrap stand-in, per ansible-core version."""
    import ansible.release

    home = Path.home() / ".cache" / "virtsnap" / "ansible-test" / ansible.release.__version__ / "home"
    spec = importlib.util.find_spec("ansible_test")
    assert spec is not None and spec.submodule_search_locations
    source = (Path(spec.submodule_search_locations[0]) / "_internal" / "python_requirements.py").read_text()
    (pip_version,) = re.findall(r"default_packages = dict\(\s*pip='([0-9.]+)'", source)
    wheels = home.parent / "wheels"
    if not list(wheels.glob(f"pip-{pip_version}-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
                        f"pip=={pip_version}"], check=True, timeout=600)
    (wheel,) = wheels.glob(f"pip-{pip_version}-*.whl")
    script = home / ".ansible" / "test" / "cache" / f"get_pip_{pip_version.replace('.', '_')}.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(STAND_IN.format(wheel=str(wheel)))
    return home


def test_ansible_test_sanity_passes(tmp_path: Path) -> None:
    copy = tmp_path / "ansible_collections" / "virtsnap" / "virtsnap"
    shutil.copytree(COLLECTION, copy, ignore=shutil.ignore_patterns("tests/output", "__pycache__"))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {**os.environ, "HOME": str(_home()), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-test")), "sanity", "--python", python,
                           "--local", "--color", "no"], cwd=copy, env=env, capture_output=True, text=True,
                          timeout=1800, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    ran = set(re.findall(r'^Running sanity test "([\w-]+)"', output, re.M))
    assert MUST_RUN <= ran, f"not run: {sorted(MUST_RUN - ran)}\n{output}"
