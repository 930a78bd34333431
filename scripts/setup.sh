#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for virtsnap: system packages (when missing) and the project venv.
# Idempotent and quick when everything is already there. Used by `make demo`, `make test` and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests and demo use: libvirt 9.0 as the oracle (virsh, python3-libvirt), QEMU and
# qemu-img, what the tiny test guest is built from, and Go + govmomi for the vcsim simulator.
PACKAGES=(libvirt-clients python3-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils busybox-static qemu-guest-agent
          e2fsprogs cpio kmod xz-utils zstd golang-go golang-github-vmware-govmomi-dev patch)
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
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.virtsnap-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,qemu,esx]'
    touch "$stamp"
fi
