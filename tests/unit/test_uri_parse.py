"""parse_uri: host-less URIs (qemu:///session, test:///default) are split without urllib.parse (issue 21's cold
start); every URI must still read exactly as urlsplit reads it."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from virtsnap.uri import URI, parse_uri

URIS = ("qemu:///session", "qemu:///system", "test:///default", "vbox:///session", "QEMU:///Session",
        "qemu+ssh:///system", "qemu:///", "qemu:////x//y", "qemu:///a b", "qemu:///x?socket=/tmp/s",
        "qemu:///x#frag", "qemu:///%41", "qemu:///[::1]", "qemu:///u@h", "qemu://host/system", "qemu://h:1/x",
        "esx://root@esx.example/?no_verify=1", "test:///default?x=1&y", "a.b-c+d:///p", "qemu:///x\\y")


def by_urlsplit(text: str) -> URI:
    parts = urlsplit(text)
    scheme, _, transport = parts.scheme.partition("+")
    return URI(scheme=scheme.lower(), transport=transport or None,
               user=unquote(parts.username) if parts.username else None, host=parts.hostname or None,
               port=parts.port, path=parts.path or "/", params=dict(parse_qsl(parts.query, keep_blank_values=True)),
               text=text)


@pytest.mark.parametrize("text", URIS)
def test_uri_reads_as_urlsplit_reads_it(text: str) -> None:
    assert parse_uri(text) == by_urlsplit(text)


@pytest.mark.parametrize("text", ["1qemu:///x", ":///x", "+:///x"])
def test_malformed_scheme_is_still_refused(text: str) -> None:
    import virtsnap

    with pytest.raises(virtsnap.libvirtError) as info:
        parse_uri(text)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_INVALID_ARG
