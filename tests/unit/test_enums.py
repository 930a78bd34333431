"""virtsnap.enums against the standard library's enum: the same class body made both ways behaves alike in
everything virtsnap and libvirt-python programs do with members (lookup, aliases, iteration, flags arithmetic,
printing, pickling), and a cold `import virtsnap` no longer imports `enum` at all."""

from __future__ import annotations

import copy
import enum
import pickle
import subprocess
import sys

import pytest

from virtsnap import enums
from virtsnap.errors import ErrorCode, ErrorDomain, libvirtError
from virtsnap.flags import SnapshotCreate, SnapshotList, SnapshotState


def build(E, I, F):  # noqa: N803 - the three bases, each side's
    class Flag(F):
        A = 1
        B = 2
        C = 4
        D = 1  # an alias of A

    class State(I):
        NOSTATE = 0
        RUNNING = 1
        SHUT_OFF = 5

        @property
        def xml(self):
            return self.name.lower()

        @classmethod
        def from_xml(cls, value):
            return next((m for m in cls if m.xml == value), None)

    class Kind(E):
        FILE = "file"
        BLOCK = "block"

    return Flag, State, Kind


def observations(E, I, F) -> list[object]:  # noqa: N803
    Flag, State, Kind = build(E, I, F)
    seen: list[object] = [
        repr(Flag(5)), Flag(5).name, repr(Flag(0)), Flag(0).name, repr(Flag.A | Flag.B), (Flag.A | Flag.B).name,
        Flag(3) is (Flag.A | Flag.B), str(Flag.A), format(Flag.A, "x"), f"{Flag.C}", Flag.D is Flag.A,
        [m.name for m in Flag], list(Flag.__members__), repr(~Flag.A), isinstance(Flag.A | 4, Flag),
        repr(Flag.A & 3), repr(7 & Flag.A), int(Flag.A | Flag.B), Flag.A == 1, hash(Flag.A) == hash(1),
        5 & ~Flag.A, len(Flag),
        repr(State.RUNNING), str(State.RUNNING), State(1) is State.RUNNING, State.from_xml("shut_off"),
        len(State), State["RUNNING"] is State.RUNNING, State.RUNNING in State, State.RUNNING.value,
        type(State.RUNNING.value), State.RUNNING + 1, f"{State.RUNNING:03d}", State.RUNNING < 2,
        sorted([State.SHUT_OFF, State.NOSTATE]), {State.RUNNING: "x"}[1],
        copy.deepcopy([State.RUNNING])[0] is State.RUNNING, State.RUNNING.__reduce_ex__(4)[1],
        repr(Kind.FILE), str(Kind.FILE), f"{Kind.FILE}", Kind("file") is Kind.FILE, Kind.FILE.value,
        Kind.FILE == "file", Kind.BLOCK.__reduce_ex__(4)[1], {Kind.FILE: 1}[Kind.FILE],
    ]
    for bad in (lambda: State(9), lambda: Kind("nfs")):
        with pytest.raises(ValueError) as info:
            bad()
        seen.append(str(info.value))
    seen += [enums.member(State, 9, "none"), enums.member(State, 5, None) is State.SHUT_OFF]
    return seen


def test_behaves_as_the_standard_enum() -> None:
    ours = observations(enums.Enum, enums.IntEnum, enums.IntFlag)
    theirs = observations(enum.Enum, enum.IntEnum, enum.IntFlag)
    assert [repr(o).replace("enums", "enum") for o in ours] == [repr(o) for o in theirs]


def test_virtsnaps_members_round_trip_and_print_as_libvirt_python() -> None:
    assert pickle.loads(pickle.dumps(SnapshotState.RUNNING)) is SnapshotState.RUNNING
    assert pickle.loads(pickle.dumps(SnapshotCreate.LIVE | SnapshotCreate.DISK_ONLY)) == 0x110
    assert SnapshotList.DESCENDANTS is SnapshotList.ROOTS and "DESCENDANTS" in SnapshotList.__members__
    err = libvirtError("boom", code=8, domain=35)
    assert err.code is ErrorCode.INVALID_ARG and err.domain is ErrorDomain.DOMAIN_SNAPSHOT
    assert libvirtError("boom", code=4242, domain=4343).get_error_code() == 4242  # a code from a newer peer
    assert str(ErrorCode.INVALID_ARG) == "8" and f"{SnapshotCreate.LIVE}" == "256"


def test_a_cold_import_does_not_import_enum() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, virtsnap; print('enum' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
