#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for virtsnap: system packages (when missing) and the project venv.
# `setup.sh demo` installs only what `make demo` needs; `setup.sh test` (the default) adds the test oracles;
# `setup.sh bench` is `test` plus matplotlib, for the plot of `make bench`'s report.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-test}
case $part in demo|test) ;; bench) part=test; bench=1 ;; *) echo "usage: $0 [demo|test|bench]" >&2; exit 2 ;; esac

# The demo: QEMU and qemu-img, and what the tiny test guest is built from (tests/guest/build_guest.py).
DEMO_PACKAGES=(qemu-system-x86 qemu-utils busybox-static qemu-guest-agent e2fsprogs cpio kmod xz-utils zstd binutils)
# The tests add libvirt 9.0 as the oracle (virsh, libvirtd, python3-libvirt), Go + govmomi for the vcsim
# simulator, man-db/groff to check that the man page renders, libvirt-dev for libvirt-api.xml
# (scripts/gen_libvirt_surface.py and its test), and Chromium with its WebDriver for the browser tests of
# `virtsnap serve`; gcc, pkg-config and python3-dev build libvirt-python into the venv (the libvirt+<URI> driver,
# extra `libvirt`), since the venv does not see Debian's python3-libvirt; OpenSSH (client and server) for the
# `+ssh` remote tests; virtinst (virt-install), ovmf and swtpm-tools make the corpus of typical guests that
# tests/qemu_guest/test_corpus.py defines; debian-archive-keyring lets apt check libvirt's source package,
# whose own test vectors the tests fetch (tests/libvirt_source.py); swtpm runs the emulated <tpm> (docs/tpm.md);
# iproute2 makes the bridges of the <interface type='bridge'|'network'> tests.
TEST_PACKAGES=(libvirt-clients python3-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu gcc pkg-config python3-dev
               virtinst ovmf swtpm swtpm-tools
               golang-go golang-github-vmware-govmomi-dev patch man-db groff-base bash-completion zsh libvirt-dev
               chromium chromium-driver openssh-client openssh-server debian-archive-keyring iproute2)
PACKAGES=("${DEMO_PACKAGES[@]}")
[[ $part == test ]] && PACKAGES+=("${TEST_PACKAGES[@]}")

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: Debian packages installed (${SECONDS} s)"
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
# The demo needs virtsnap's core only (QEMU driver and CLI); the tests add their tools, pyvmomi, MkDocs and the
# web view's Starlette and uvicorn.
extras=""
[[ $part == test ]] && extras="[test,esx,docs,web,libvirt${bench:+,bench}]"
stamp=.venv/.virtsnap-installed-$part${bench:+-bench}
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    touch "$stamp"
    echo "setup: Python packages installed (${SECONDS} s)"
fi

# A newer libvirtd beside Debian 12's 9.0 for the tests of the version-decided delegation (libvirt's own external
# revert and delete): bookworm-backports' libvirt, its .debs unpacked into ~/.cache/virtsnap/libvirt-bpo/<version>/
# (not installed; once, then reused), started in a private mount namespace by tests/qemu_guest/conftest.py.
if [[ $part == test ]]; then
    .venv/bin/python tests/libvirt_bpo.py
fi
