"""RelaxNG validation of snapshot XML for VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE: libvirt's own schema where
libvirt is installed (Debian's libvirt0 ships it), virtsnap's copy of its snapshot part otherwise.

The schema is compiled once per process, on first use.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, ErrorDomain, error
from .xmlutil import lxml_etree, parse, safe_parser

LIBVIRT_SCHEMA = Path("/usr/share/libvirt/schemas/domainsnapshot.rng")


@functools.cache
def _snapshot_schema() -> tuple[Any, str]:
    etree = lxml_etree()
    if LIBVIRT_SCHEMA.is_file():  # libvirt's, with its includes (domaincommon.rng ...) beside it
        return etree.RelaxNG(etree.parse(str(LIBVIRT_SCHEMA), safe_parser())), str(LIBVIRT_SCHEMA)
    path = resources.files(__package__).joinpath("schemas/domainsnapshot.rng")
    return etree.RelaxNG(etree.fromstring(path.read_bytes(), safe_parser())), str(path)


def validate_snapshot(xml: str) -> None:
    """Raise VIR_ERR_XML_INVALID_SCHEMA if `xml` does not follow the domainsnapshot schema."""
    parse(xml, "domainsnapshot", "domain_snapshot", ErrorDomain.DOMAIN_SNAPSHOT)  # safety checks first
    etree = lxml_etree()
    data = xml.encode("utf-8") if xml.lstrip().startswith("<?xml") else xml
    doc = etree.fromstring(data, safe_parser())
    schema, path = _snapshot_schema()
    if not schema.validate(doc):
        messages = "".join(f"{entry.message}\n" for entry in schema.error_log)
        raise error(ErrorCode.XML_INVALID_SCHEMA, ErrorDomain.XML, f"Unable to validate doc against {path}\n{messages}")
