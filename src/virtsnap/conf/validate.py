"""RelaxNG validation of snapshot XML for VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE (virtsnap's own schema).

The schema is compiled once per process, on first use.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from ..errors import ErrorCode, ErrorDomain, error
from .xmlutil import _lxml, _parser, parse


@functools.cache
def _snapshot_schema() -> Any:
    etree = _lxml()
    text = resources.files(__package__).joinpath("schemas/domainsnapshot.rng").read_bytes()
    return etree.RelaxNG(etree.fromstring(text, _parser()))


def validate_snapshot(xml: str) -> None:
    """Raise VIR_ERR_XML_INVALID_SCHEMA if `xml` does not follow the domainsnapshot schema."""
    parse(xml, "domainsnapshot", "domain_snapshot", ErrorDomain.DOMAIN_SNAPSHOT)  # safety checks first
    etree = _lxml()
    data = xml.encode("utf-8") if xml.lstrip().startswith("<?xml") else xml
    doc = etree.fromstring(data, _parser())
    schema = _snapshot_schema()
    if not schema.validate(doc):
        messages = "".join(f"{entry.message}\n" for entry in schema.error_log)
        path = resources.files(__package__).joinpath("schemas/domainsnapshot.rng")
        raise error(ErrorCode.XML_INVALID_SCHEMA, ErrorDomain.XML, f"Unable to validate doc against {path}\n{messages}")
