"""The QEMU driver's domain table walked whole: every element and attribute it accepts as applied or checked
names the test that shows its effect on QEMU (or, for the few not covered yet, is listed as a known gap with
the reason). A new table row without an effect test fails here; so does a listed test that does not exist.

Bookkeeping the table marks KEPT (libvirt's own, no effect on a guest in libvirt either) needs no test, and an
element that only groups others (<os>, <devices>) is shown by its children's tests.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from virtsnap.drivers.qemu.domain import ANY, KEPT, SUBSET, Spec

ROOT = Path(__file__).resolve().parents[2]
T = "tests/qemu_guest/test_domain_table.py::"
A = "tests/qemu_guest/test_argv_injection.py::"
P = "tests/qemu_guest/test_pci_addresses.py::"
M = "tests/qemu_guest/test_current_memory.py::"
TPM = "tests/qemu_guest/test_tpm.py::"
DEVICES, NICS, VIDEO, NONE, INPUTS = (T + "test_devices_reach_qemu", T + "test_nic_models",
                                      T + "test_video_models", T + "test_video_none_and_balloon_none_add_nothing",
                                      T + "test_inputs")
MACHINE, DISK, AUDIO, PORTS, REFUSED = (T + "test_machine_features_clock_pm_and_cpu",
                                        T + "test_disk_cache_discard_io_and_boot_order",
                                        T + "test_audio_none_is_a_silent_backend", T + "test_pcie_root_ports_on_q35",
                                        T + "test_unapplied_items_are_refused_all_at_once")
HOSTILE, KERNEL, VNC, OPTIONS = (A + "test_hostile_strings_reach_qemu_as_data",
                                 A + "test_hostile_kernel_path_and_cmdline_are_data",
                                 A + "test_vnc_listen_port_and_password_are_honoured",
                                 A + "test_machine_and_targets_with_options_are_refused")
Q35, PC, BAD_PCI = (P + "test_q35_devices_sit_where_their_addresses_say", P + "test_pc_devices_sit_at_their_slots",
                    P + "test_an_address_that_cannot_be_applied_is_refused")
DRIVES = tuple("tests/qemu_guest/test_drive_addresses.py::" + t for t in (
    "test_pc_disks_sit_at_libvirts_drive_addresses", "test_q35_sata_disks_take_the_port_their_name_or_address_gives",
    "test_drive_addresses_one_controller_cannot_hold_are_refused_all_at_once"))
USB_PORTS = tuple("tests/qemu_guest/test_usb_addresses.py::" + t for t in (
    "test_usb_inputs_and_redirection_sit_at_their_ports", "test_ehci_ports_as_libvirt_counts_them",
    "test_usb_addresses_that_cannot_be_applied_are_refused_all_at_once"))
BALLOON = M + "test_current_memory_inflates_the_balloon"
NO_BALLOON = M + "test_current_memory_without_a_balloon_is_refused"
TPM_STATE, TPM_TIS = TPM + "test_tpm_state_comes_back_with_internal_and_external_memory_snapshots", \
    TPM + "test_swtpm_ends_with_qemu"
SECLABEL = "tests/qemu_guest/test_confine.py::test_dac_seclabel_is_honoured_and_others_refused"
D = "tests/qemu_guest/test_domain_devices.py::"
SPICE, SPICE_SECRET, SPICE_UNIX, SPICE_REFUSED = (D + "test_spice_set_reaches_qemu",
                                                  D + "test_spice_password_comes_through_a_secret_not_argv",
                                                  D + "test_spice_on_a_unix_socket",
                                                  D + "test_spice_pieces_are_refused_where_they_cannot_apply")
SOUND, EHCI, HYPERV, HYPERV_REFUSED = (D + "test_sound_models", D + "test_ich9_ehci_with_uhci_companions",
                                       D + "test_hyperv_kvm_hidden_and_hypervclock",
                                       D + "test_hyperv_that_tcg_cannot_do_is_refused_by_name")
TOPOLOGY, VCPUS, EMULATOR = (D + "test_topology_pinning_and_memfd_memory",
                             D + "test_vcpu_current_and_libvirts_default_topology",
                             D + "test_emulator_must_be_the_qemu_virtsnap_runs")
N = "tests/qemu_guest/test_netdev.py::"
NET_BRIDGE, NET_NETWORK, NET_ERRORS, NET_NAMES = (N + "test_bridge_nic_reaches_qemu_and_guest_and_goes_at_stop",
                                                  N + "test_network_nic_uses_the_libvirt_networks_bridge",
                                                  N + "test_missing_and_inactive_networks_and_bridges",
                                                  N + "test_names_are_checked_at_define")
E = "tests/qemu_guest/test_domain_effects.py::"
IDENTITY, CPU_CHECKS, PLACEMENT, DISK_IO, SERIAL_CONSOLE, SNAPSHOT_DEFAULT, MOUSE_GL, BOOTED, BANKS = (
    E + "test_uuid_boot_order_mac_videos_sound_address_apic_and_pae",
    E + "test_cpu_match_check_migratable_and_fallback",
    E + "test_vcpu_placement_auto_is_refused", E + "test_disk_io_modes_and_readonly_nodes",
    E + "test_serial_append_and_the_console_as_the_first_serial",
    E + "test_per_disk_snapshot_default_is_what_create_does", E + "test_spice_mouse_mode_and_gl",
    E + "test_read_only_block_device_console_file_and_on_reboot",
    E + "test_pcr_banks_sha384_and_sha512_and_on_poweroff")
SERIAL_MODEL = T + "test_serial_target_model_is_isa_serial_only"
UEFI = "tests/qemu_guest/test_uefi.py::test_internal_and_external_memory_snapshots_bring_the_nvram_back"
F = "tests/unit/test_firmware.py::"
FW_PLAIN, FW_FEATURES, FW_SMM, FW_LOADER, FW_NVRAM = (
    F + "test_plain_efi_on_q35_takes_the_first_descriptor_secure_boot_with_keys_and_smm",
    F + "test_firmware_features_and_machine_choose_the_descriptor",
    F + "test_smm_off_and_loader_secure_no_rule_out_smm_firmware",
    F + "test_explicit_loader_keeps_the_users_nvram_and_finds_its_template",
    F + "test_a_named_nvram_that_does_not_exist_is_made_raw_from_the_template_and_is_ours")

# table path (element, or element@attribute) -> the tests that assert its effect as a user would see it
EFFECTS: dict[str, tuple[str, ...]] = {
    "domain/name": (HOSTILE,),
    "domain/memory": (BALLOON,), "domain/memory@unit": (BALLOON,),
    "domain/currentMemory": (BALLOON, NO_BALLOON), "domain/currentMemory@unit": (BALLOON,),
    "domain/os/type": (REFUSED,), "domain/os/type@arch": (REFUSED,), "domain/os/type@machine": (OPTIONS, Q35),
    "domain/os/kernel": (KERNEL,), "domain/os/cmdline": (KERNEL,), "domain/os/initrd": (BALLOON,),
    "domain/features/acpi": (MACHINE,), "domain/features/vmport": (MACHINE,),
    "domain/features/vmport@state": (MACHINE,),
    "domain/cpu": (MACHINE,), "domain/cpu@mode": (MACHINE,), "domain/cpu/model": (MACHINE,),
    "domain/clock": (MACHINE,), "domain/clock@offset": (MACHINE,), "domain/clock/timer": (MACHINE,),
    "domain/clock/timer@name": (MACHINE,), "domain/clock/timer@tickpolicy": (MACHINE,),
    "domain/clock/timer@present": (MACHINE,),
    "domain/on_crash": (REFUSED,),
    "domain/pm/suspend-to-mem": (MACHINE,), "domain/pm/suspend-to-mem@enabled": (MACHINE,),
    "domain/pm/suspend-to-disk": (MACHINE,), "domain/pm/suspend-to-disk@enabled": (MACHINE,),
    "domain/devices/disk": (HOSTILE, DISK), "domain/devices/disk@type": (HOSTILE,),
    "domain/devices/disk@device": (Q35,),
    "domain/devices/disk/driver": (DISK,), "domain/devices/disk/driver@type": (DISK,),
    "domain/devices/disk/driver@cache": (DISK,), "domain/devices/disk/driver@discard": (DISK,),
    "domain/devices/disk/source": (HOSTILE,), "domain/devices/disk/source@file": (HOSTILE,),
    "domain/devices/disk/target": (HOSTILE,), "domain/devices/disk/target@dev": (HOSTILE, OPTIONS),
    "domain/devices/disk/target@bus": (DISK, Q35, *DRIVES),
    "domain/devices/disk/boot": (DISK,), "domain/devices/disk/boot@order": (DISK,),
    "domain/devices/disk/serial": (T + "test_disk_serial_and_shareable",),
    "domain/devices/disk/shareable": (T + "test_disk_serial_and_shareable",),
    "domain/devices/serial/target@port": (T + "test_serial_target_port_is_the_isa_index",),
    "domain/devices/disk/address": (Q35, PC, BAD_PCI, *DRIVES),
    "domain/devices/controller": (DEVICES, PORTS), "domain/devices/controller@type": (DEVICES, PORTS),
    "domain/devices/controller@model": (DEVICES, PORTS), "domain/devices/controller@index": (PORTS, Q35),
    "domain/devices/controller@ports": (DEVICES,), "domain/devices/controller/model": (PORTS,),
    "domain/devices/controller/model@name": (PORTS,), "domain/devices/controller/target": (PORTS,),
    "domain/devices/controller/target@chassis": (PORTS,), "domain/devices/controller/target@port": (PORTS,),
    "domain/devices/controller/address": (Q35, PC, BAD_PCI),
    "domain/devices/channel": (HOSTILE,), "domain/devices/channel@type": (HOSTILE,),
    "domain/devices/channel/source": (HOSTILE,), "domain/devices/channel/source@mode": (HOSTILE,),
    "domain/devices/channel/source@path": (HOSTILE,), "domain/devices/channel/target": (HOSTILE,),
    "domain/devices/channel/target@type": (HOSTILE,), "domain/devices/channel/target@name": (HOSTILE,),
    "domain/devices/channel/address": (T + "test_channel_virtio_serial_address_is_the_ports_nr",),
    "domain/devices/serial": (DEVICES, HOSTILE), "domain/devices/serial@type": (DEVICES, HOSTILE),
    "domain/devices/serial/source": (HOSTILE,), "domain/devices/serial/source@path": (HOSTILE,),
    "domain/devices/interface": (NICS,), "domain/devices/interface@type": (HOSTILE,),
    "domain/devices/interface/model": (NICS, T + "test_nic_without_model_is_libvirts_default"),
    "domain/devices/interface/model@type": (NICS,),
    "domain/devices/interface/source": (NET_BRIDGE, NET_NETWORK, NET_NAMES),
    "domain/devices/interface/source@bridge": (NET_BRIDGE, NET_NAMES), "domain/devices/interface/source@network":
        (NET_NETWORK, NET_ERRORS, NET_NAMES), "domain/devices/interface/address": (Q35, PC, BAD_PCI),
    "domain/devices/graphics": (VNC,), "domain/devices/graphics@type": (VNC,),
    "domain/devices/graphics@port": (VNC,), "domain/devices/graphics@autoport": (VNC,),
    "domain/devices/graphics@listen": (VNC,), "domain/devices/graphics@passwd": (VNC,),
    "domain/devices/graphics/listen": (VNC,), "domain/devices/graphics/listen@type": (VNC,),
    "domain/devices/graphics/listen@address": (VNC,),
    "domain/devices/input": (INPUTS,), "domain/devices/input@type": (INPUTS,), "domain/devices/input@bus": (INPUTS,),
    "domain/devices/input/address": (PC, BAD_PCI, *USB_PORTS),
    "domain/devices/redirdev/address": USB_PORTS,
    "domain/devices/video/model": (VIDEO, NONE),
    "domain/devices/video/model@type": (VIDEO, NONE), "domain/devices/video/model@vram": (VIDEO,),
    "domain/devices/video/address": (PC,),
    "domain/devices/memballoon": (DEVICES, NONE), "domain/devices/memballoon@model": (DEVICES, NONE),
    "domain/devices/memballoon/address": (Q35, BAD_PCI),
    "domain/devices/rng": (DEVICES,), "domain/devices/rng@model": (DEVICES,), "domain/devices/rng/backend": (DEVICES,),
    "domain/devices/rng/backend@model": (DEVICES,), "domain/devices/rng/address": (Q35,),
    "domain/devices/audio": (AUDIO,), "domain/devices/audio@id": (AUDIO,), "domain/devices/audio@type": (AUDIO,),
    "domain/devices/tpm": (TPM_STATE,), "domain/devices/tpm@model": (TPM_STATE, TPM_TIS),
    "domain/devices/tpm/backend": (TPM_STATE,), "domain/devices/tpm/backend@type": (TPM_STATE,),
    "domain/devices/tpm/backend@version": (TPM_STATE,),
    "domain/devices/tpm/backend@persistent_state": (
        "tests/qemu_guest/test_tpm_persistent.py::test_persistent_state_is_kept_at_undefine_unless_removed_with_tpm",),
    "domain/devices/tpm/backend/active_pcr_banks/sha1": (TPM_STATE,),
    "domain/devices/tpm/backend/active_pcr_banks/sha256": (TPM_STATE,),
    "domain/vcpu": (VCPUS, TOPOLOGY), "domain/vcpu@current": (VCPUS,), "domain/vcpu@cpuset": (TOPOLOGY,),
    "domain/memoryBacking/source": (TOPOLOGY,), "domain/memoryBacking/source@type": (TOPOLOGY,),
    "domain/memoryBacking/access": (TOPOLOGY,), "domain/memoryBacking/access@mode": (TOPOLOGY,),
    "domain/cpu/topology": (TOPOLOGY,), "domain/cpu/topology@sockets": (TOPOLOGY,),
    "domain/cpu/topology@dies": (TOPOLOGY,), "domain/cpu/topology@cores": (TOPOLOGY,),
    "domain/cpu/topology@threads": (TOPOLOGY,),
    "domain/features/apic@eoi": (HYPERV_REFUSED,),
    "domain/features/hyperv": (HYPERV,), "domain/features/hyperv@mode": (HYPERV,),
    **{f"domain/features/hyperv/{e}": (HYPERV,) for e in ("relaxed", "vapic", "spinlocks", "runtime", "reset",
                                                          "frequencies", "reenlightenment", "vendor_id", "synic")},
    **{f"domain/features/hyperv/{e}@state": (HYPERV,) for e in ("relaxed", "vapic", "spinlocks", "runtime", "reset",
                                                                "frequencies", "reenlightenment", "vendor_id",
                                                                "synic")},
    "domain/features/hyperv/spinlocks@retries": (HYPERV,), "domain/features/hyperv/vendor_id@value": (HYPERV,),
    **{f"domain/features/hyperv/{e}": (HYPERV_REFUSED,) for e in ("vpindex", "stimer", "stimer/direct", "ipi",
                                                                  "tlbflush", "evmcs")},
    **{f"domain/features/hyperv/{e}@state": (HYPERV_REFUSED,) for e in ("vpindex", "stimer", "stimer/direct", "ipi",
                                                                        "tlbflush", "evmcs")},
    "domain/features/kvm/hidden": (HYPERV,), "domain/features/kvm/hidden@state": (HYPERV,),
    "domain/devices/emulator": (EMULATOR,),
    "domain/devices/controller/master": (EHCI,), "domain/devices/controller/master@startport": (EHCI,),
    "domain/devices/graphics@tlsPort": (SPICE_REFUSED,), "domain/devices/graphics/image": (SPICE_REFUSED,),
    "domain/devices/graphics/image@compression": (SPICE_REFUSED,),
    "domain/devices/graphics/clipboard": (SPICE_UNIX,), "domain/devices/graphics/clipboard@copypaste": (SPICE_UNIX,),
    "domain/devices/graphics/filetransfer": (SPICE_UNIX,),
    "domain/devices/graphics/filetransfer@enable": (SPICE_UNIX,),
    "domain/devices/sound": (SOUND, SPICE), "domain/devices/sound@model": (SOUND, SPICE_REFUSED),
    "domain/devices/sound/codec": (SOUND,), "domain/devices/sound/codec@type": (SOUND,),
    "domain/devices/sound/audio": (SOUND,), "domain/devices/sound/audio@id": (SOUND,),
    "domain/devices/redirdev": (SPICE,), "domain/devices/redirdev@bus": (SPICE,),
    "domain/devices/redirdev@type": (SPICE,),
    "domain/os": (UEFI,), "domain/os@firmware": (UEFI, FW_PLAIN),
    "domain/os/firmware/feature": (FW_FEATURES,), "domain/os/firmware/feature@enabled": (FW_FEATURES,),
    "domain/os/firmware/feature@name": (FW_FEATURES,),
    "domain/os/loader": (FW_LOADER,), "domain/os/loader@readonly": (FW_LOADER,),
    "domain/os/loader@secure": (FW_SMM,), "domain/os/loader@type": (FW_LOADER,),
    "domain/os/nvram": (UEFI, FW_NVRAM), "domain/os/nvram@format": (FW_NVRAM,),
    "domain/os/nvram@template": (FW_LOADER,),
    "domain/features/smm": (FW_SMM,), "domain/features/smm@state": (FW_SMM,),
    "domain/seclabel": (SECLABEL,), "domain/seclabel@type": (SECLABEL,), "domain/seclabel@model": (SECLABEL,),
    "domain/seclabel@relabel": (SECLABEL,), "domain/seclabel/label": (SECLABEL,),
    "domain/uuid": (IDENTITY,), "domain/os/boot": (IDENTITY,), "domain/os/boot@dev": (IDENTITY,),
    "domain/devices/interface/mac": (IDENTITY,), "domain/devices/interface/mac@address": (IDENTITY,),
    "domain/features/apic": (IDENTITY,), "domain/features/pae": (IDENTITY,),
    "domain/devices/video/model@heads": (IDENTITY,), "domain/devices/video/model@primary": (IDENTITY,),
    "domain/devices/video/model@ram": (IDENTITY,), "domain/devices/video/model@vgamem": (IDENTITY,),
    "domain/devices/sound/address": (IDENTITY,),
    "domain/cpu@match": (CPU_CHECKS,), "domain/cpu@check": (CPU_CHECKS,), "domain/cpu@migratable": (CPU_CHECKS,),
    "domain/cpu/model@fallback": (CPU_CHECKS,),
    "domain/vcpu@placement": (PLACEMENT, TOPOLOGY),
    "domain/devices/disk/driver@io": (DISK_IO,), "domain/devices/disk/driver@name": (DISK_IO,),
    "domain/devices/disk/readonly": (DISK_IO, BOOTED), "domain/devices/disk/source@dev": (BOOTED,),
    "domain/devices/serial/source@append": (SERIAL_CONSOLE,),
    "domain/devices/serial/target": (SERIAL_MODEL, SERIAL_CONSOLE),
    "domain/devices/serial/target@type": (SERIAL_MODEL, SERIAL_CONSOLE),
    "domain/devices/serial/target/model": (SERIAL_MODEL, SERIAL_CONSOLE),
    "domain/devices/serial/target/model@name": (SERIAL_MODEL, SERIAL_CONSOLE),
    **{f"domain/devices/console{p}": (SERIAL_CONSOLE, BOOTED) for p in (
        "", "@type", "/source", "/source@path", "/source@append", "/target", "/target@type", "/target@port")},
    "domain/devices/graphics/mouse": (MOUSE_GL,), "domain/devices/graphics/mouse@mode": (MOUSE_GL,),
    "domain/devices/graphics/gl": (MOUSE_GL,), "domain/devices/graphics/gl@enable": (MOUSE_GL,),
    "domain/on_reboot": (BOOTED,), "domain/on_poweroff": (BANKS, BOOTED),
    "domain/devices/disk@snapshot": (SNAPSHOT_DEFAULT,),
    "domain/devices/tpm/backend/active_pcr_banks/sha384": (BANKS,),
    "domain/devices/tpm/backend/active_pcr_banks/sha512": (BANKS,),
}

# Accepted and applied, but with no test of its effect possible here (the reason says why).
KNOWN_GAPS: dict[str, str] = {
    "domain@type": "kvm (-accel kvm) cannot run on the CI machine (/dev/kvm is not usable there); qemu is every "
                   "other test",
}


def accepted(tag: str = "domain", spec: Spec | None = None, path: str = "") -> list[str]:
    """Every applied or checked element and attribute of the table, by path; pure containers left out."""
    spec = spec or SUBSET["domain"]
    where = f"{path}/{tag}" if path else tag
    if spec.how == KEPT:
        return []
    attrs = sorted(spec.attrs - spec.kept) if spec.attrs != ANY else []
    container = isinstance(spec.children, dict) and spec.children and not attrs and not spec.text
    found = [] if container or where == "domain" else [where]
    found += [f"{where}@{a}" for a in attrs]
    if isinstance(spec.children, dict):
        for child, sub in spec.children.items():
            found += accepted(child, sub, where)
    return found


@functools.cache
def defined_functions(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def test_every_accepted_entry_has_an_effect_test_or_is_a_known_gap() -> None:
    missing = [p for p in accepted() if p not in EFFECTS and p not in KNOWN_GAPS]
    assert missing == []


def test_every_listed_effect_test_exists() -> None:
    listed = {test for tests in EFFECTS.values() for test in tests}
    absent = sorted(t for t in listed if t.split("::")[1] not in defined_functions(t.split("::")[0]))
    assert absent == []


def test_no_stale_entries() -> None:
    """A path listed here that the table no longer accepts (or now keeps as bookkeeping) is removed."""
    table = set(accepted())
    assert sorted(p for p in EFFECTS if p not in table) == []
    assert sorted(p for p, why in KNOWN_GAPS.items() if why and p not in table) == []


def test_an_entry_added_without_a_test_is_caught() -> None:
    from virtsnap.drivers.qemu import domain

    devices = domain.SUBSET["domain"].children["devices"]
    assert isinstance(devices.children, dict)
    planted = Spec(frozenset({"model"}), {}, False, domain.APPLIED, frozenset())
    devices.children["watchdog"] = planted
    try:
        assert [p for p in accepted() if p not in EFFECTS and p not in KNOWN_GAPS] == [
            "domain/devices/watchdog", "domain/devices/watchdog@model"]
    finally:
        del devices.children["watchdog"]
