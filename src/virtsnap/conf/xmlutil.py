"""Safe XML parsing into a small immutable-by-convention element tree, and libvirt-style formatting.

Parsing uses libxml2 (through lxml, imported lazily) with entities, DTDs and network access disabled,
so parse errors read exactly as libvirt's; formatting reproduces libvirt's virBuffer output byte for byte.

Namespaces are kept as written, the way libvirt keeps them in the parts of a document it does not interpret (a
domain's <metadata>): names carry their prefix ("libosinfo:os", "xml:lang"), and an element's namespace
declarations are attributes ("xmlns:libosinfo", "xmlns"), first and in document order, as libxml2 keeps and
prints them. A tree therefore formats back to XML that parses to the same tree.
"""

from __future__ import annotations

from ..errors import ErrorCode, ErrorDomain, error, raw_error

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

    from lxml import etree

MAX_XML_BYTES = 10 * 1024 * 1024  # libvirt refuses documents over 10 MiB as well (VIR_XML_MAX)
MAX_DEPTH = 256
MAX_ELEMENTS = 50_000  # a real domain has a few hundred
MAX_ATTRIBUTES = 256
_DECLARED_ENCODING = r"""(<\?xml[^>]*?\bencoding\s*=\s*["'])[^"']*(["'])"""  # compiled on first use
_XML_NS = "http://www.w3.org/XML/1998/namespace"  # the "xml" prefix, bound without a declaration


class Node:
    """One XML element: tag, attributes in document order, text (if no children), children."""

    __slots__ = ("attrs", "children", "tag", "text")

    def __init__(self, tag: str, attrs: dict[str, str] | None = None, text: str | None = None,
                 children: list[Node] | None = None) -> None:
        self.tag = tag
        self.attrs: dict[str, str] = attrs if attrs is not None else {}
        self.text = text
        self.children: list[Node] = children if children is not None else []

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Node) and self.tag == other.tag and self.attrs == other.attrs
                and self.text == other.text and self.children == other.children)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Node({self.tag!r}, {self.attrs!r}, {self.text!r}, {self.children!r})"

    def find(self, tag: str) -> Node | None:
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def findall(self, tag: str) -> list[Node]:
        return [child for child in self.children if child.tag == tag]

    def findtext(self, path: str) -> str | None:
        """Text of the element at a '/'-separated path; "" for an empty element, None if absent."""
        node: Node | None = self
        for part in path.split("/"):
            node = node.find(part) if node is not None else None
        if node is None:
            return None
        return node.text if node.text is not None else ""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    def copy(self) -> Node:
        return Node(self.tag, dict(self.attrs), self.text, [c.copy() for c in self.children])


def detached(node: Node, parent: Node) -> Node:
    """`node`, a child of `parent` about to be kept and printed apart from it (a snapshot's <domain>), made to
    declare the prefixes it uses that `parent` declares: without them its XML would not read back. A copy if
    anything is added."""
    inherited = {name: uri for name, uri in parent.attrs.items()
                 if name.startswith("xmlns:") and name not in node.attrs}
    if not inherited:
        return node
    used: set[str] = set()
    _prefixes_used(node, used)
    needed = {name: uri for name, uri in inherited.items() if name[6:] in used}
    if not needed:
        return node
    node = node.copy()
    node.attrs = {**needed, **node.attrs}
    return node


def _prefixes_used(node: Node, used: set[str]) -> None:
    for name in (node.tag, *node.attrs):
        if ":" in name:
            used.add(name.partition(":")[0])
    for child in node.children:
        _prefixes_used(child, used)


_ESCAPES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;"}
_NEEDS_ESCAPE = frozenset(_ESCAPES) | {chr(c) for c in range(32) if c not in (9, 10, 13)}


def escape(value: str) -> str:
    """virBufferEscapeString: escape markup characters and drop control characters XML cannot carry."""
    if not _NEEDS_ESCAPE.intersection(value):
        return value
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 and ch not in "\t\n\r":
            continue
        else:
            out.append(ch)
    return "".join(out)


def format_node(node: Node, indent: int = 0, root_tag: str | None = None, dumped: tuple[str, ...] = (),
                opened: tuple[str, ...] = ()) -> str:
    """Format an element the way libvirt's virBuffer formatters do: 2-space indent, single quotes.

    `dumped`: tags of the root's children that libvirt keeps as libxml2 nodes and prints with xmlNodeDump
    (a domain's <metadata>), printed as that does (see _dump_into). `opened`: tags of the root's children that
    libvirt prints as an opening and a closing line even when empty (a domain's <devices>)."""
    parts: list[str] = []
    _format_into(parts, node, indent, root_tag, dumped, opened)
    return "".join(parts)


def _format_into(parts: list[str], node: Node, indent: int, tag: str | None = None,
                 dumped: tuple[str, ...] = (), opened: tuple[str, ...] = ()) -> None:
    pad = " " * indent
    tag = tag or node.tag
    attrs = "".join(f" {k}='{escape(v)}'" for k, v in node.attrs.items())
    if not node.children and not node.text and node.tag in opened:
        parts.append(f"{pad}<{tag}{attrs}>\n{pad}</{tag}>\n")
    elif node.children:
        parts.append(f"{pad}<{tag}{attrs}>\n")
        for child in node.children:
            if child.tag in dumped:
                parts.append(" " * (indent + 2))
                _dump_into(parts, child, (indent + 2) // 2, True)
                parts.append("\n")
            else:
                _format_into(parts, child, indent + 2, opened=opened if child.tag in opened else ())
        parts.append(f"{pad}</{tag}>\n")
    elif node.text:
        parts.append(f"{pad}<{tag}{attrs}>{escape(node.text)}</{tag}>\n")
    else:
        parts.append(f"{pad}<{tag}{attrs}/>\n")


_DUMP_TEXT = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "\r": "&#13;"}
_DUMP_ATTR = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_DUMP_MAX_LEVEL = 30  # libxml2 indents by at most 60 spaces (MAX_INDENT)


def _dump_into(parts: list[str], node: Node, level: int, top: bool = False) -> None:
    """libxml2's xmlNodeDump(level, format=1) of an element, as libvirt prints the domain's <metadata>: double
    quotes, namespace declarations first, text escaped as xmlEscapeContent does, attribute values as
    xmlBufAttrSerializeTxtContent does (non-ASCII as hexadecimal character references: the node libvirt keeps
    belongs to no document, hence has no encoding). No indent before, nor newline after, the top element."""
    pad = "  " * min(level, _DUMP_MAX_LEVEL)
    if not top:
        parts.append(pad)
    tag = node.tag
    attrs = "".join(_dump_attribute(k, v) for k, v in node.attrs.items())
    if node.children:
        parts.append(f"<{tag}{attrs}>\n")
        for child in node.children:
            _dump_into(parts, child, level + 1)
            parts.append("\n")
        parts.append(f"{pad}</{tag}>")
    elif node.text:
        text = "".join(_DUMP_TEXT.get(c, c) for c in node.text)
        parts.append(f"<{tag}{attrs}>{text}</{tag}>")
    else:
        parts.append(f"<{tag}{attrs}/>")


def _dump_attribute(name: str, value: str) -> str:
    if name == "xmlns" or name.startswith("xmlns:"):
        # xmlNsDumpOutput writes the URI raw, in double quotes or, if it holds one and no single quote, in single
        # quotes. Raw '&', '<' or whitespace would not read back the same (libvirt prints them so): escaped here.
        uri = "".join(_DUMP_ATTR.get(c, c) if c in "&<\n\r\t" else c for c in value)
        if '"' in uri and "'" not in uri:
            return f" {name}='{uri}'"
        return f' {name}="{uri.replace(chr(34), "&quot;")}"'
    out = "".join(_DUMP_ATTR.get(c) or (f"&#x{ord(c):X};" if ord(c) >= 0x80 else c) for c in value)
    return f' {name}="{out}"'


def lxml_etree() -> Any:
    from lxml import etree  # heavy: imported only when XML is parsed

    return etree


def safe_parser() -> etree.XMLParser:
    etree = lxml_etree()
    # No entity expansion, no DTD loading, no network, no huge-tree mode: hostile input stays inert.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        dtd_validation=False,
        collect_ids=False,
    )


def _detail_error(text: str, url: str, domain: ErrorDomain, exc: Any, parser: Any) -> Exception:
    """libvirt's virXMLErrorHandler message: "(url):LINE: MESSAGE\\nCONTEXT\\n----^" (first error wins)."""
    # The parser's own log: the exception's log is shared by the thread and may hold older errors.
    entries = list(parser.error_log)
    entry = entries[0] if entries else None
    line = entry.line if entry is not None else 1
    column = entry.column if entry is not None else 1
    message = (entry.message if entry is not None else str(exc)).rstrip("\n")
    lines = text.split("\n")
    if line < 1 or line > len(lines) or (line == len(lines) and lines[-1] == ""):
        context, pointer = "(null)", "^"  # the parser stopped at the end of the input
    else:
        # Control characters of a hostile document must not reach a terminal.
        context = "".join(c if ord(c) >= 32 or c == "\t" else f"\\x{ord(c):02x}" for c in lines[line - 1][:80])
        pointer = "-" * max(column - 1, 0) + "^"
    return raw_error(ErrorCode.XML_DETAIL, domain, f"({url}):{line}: {message}\n{context}\n{pointer}")


def parse(text: str | bytes, root: str, url: str, domain: ErrorDomain) -> Node:
    """Parse a document whose root must be `root`; hostile or malformed input raises a libvirtError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(ErrorCode.XML_ERROR, domain, f"document is not valid UTF-8: {exc.reason}") from exc
    if len(text) > MAX_XML_BYTES:
        raise error(ErrorCode.XML_ERROR, domain, f"document is larger than {MAX_XML_BYTES} bytes")
    if "\x00" in text:
        raise error(ErrorCode.XML_ERROR, domain, "document contains a NUL character")
    etree = lxml_etree()
    if not text.strip():
        raise raw_error(ErrorCode.XML_DETAIL, domain, f"({url}):1: Document is empty\n(null)\n^")
    stripped = text.lstrip()
    if stripped.startswith("<?xml"):
        # lxml refuses str input with an encoding declaration: hand it UTF-8 bytes, declared as UTF-8
        # (the text is already decoded; another declared encoding would garble it).
        import re

        text = re.sub(_DECLARED_ENCODING, r"\1UTF-8\2", text, count=1)
        try:
            data: str | bytes = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates, e.g. invalid bytes read with surrogateescape
            raise error(ErrorCode.XML_ERROR, domain, f"document is not valid UTF-8: {exc.reason}") from exc
    else:
        data = text
    parser = safe_parser()
    try:
        element = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise _detail_error(text, url, domain, exc, parser) from exc
    tree = element.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise error(ErrorCode.XML_ERROR, domain, "document type declarations are not allowed")
    if sum(1 for _ in element.iter()) > MAX_ELEMENTS:  # counted in C; converting a million costs seconds
        raise error(ErrorCode.XML_ERROR, domain, f"document has more than {MAX_ELEMENTS} elements")
    if element.tag != root:
        raise error(ErrorCode.XML_ERROR, ErrorDomain.XML, f"expecting root element of '{root}', not '{element.tag}'")
    return _convert(element, domain, 0, _declarations(etree, element) if "xmlns" in text else {})


def _declarations(etree: Any, element: Any) -> dict[Any, list[tuple[str, str]]]:
    """The namespace declarations of each element, in document order (libxml2's nsDef lists: lxml shows them
    only as iterwalk's start-ns events, which come just before their element's start event)."""
    declared: dict[Any, list[tuple[str, str]]] = {}
    pending: list[tuple[str, str]] = []
    for event, item in etree.iterwalk(element, events=("start-ns", "start")):
        if event == "start-ns":
            pending.append(item)
        elif pending:
            declared[item] = pending  # the element proxies stay alive as keys: _convert meets the same ones
            pending = []
    return declared


_ATTRIBUTE_NAMES: dict[int, Any] = {}  # attribute count -> compiled XPath giving their qualified names


def _attribute_names(etree: Any, element: Any, count: int) -> list[str]:
    """Attribute names as written, prefix included. lxml names a namespaced attribute by its URI only and one
    URI may have several prefixes in scope: XPath's name() gives the prefix libxml2 recorded."""
    xpath = _ATTRIBUTE_NAMES.get(count)
    if xpath is None:
        terms = ",' ',".join(f"name(@*[{i}])" for i in range(1, count + 1))
        xpath = _ATTRIBUTE_NAMES[count] = etree.XPath(f"concat({terms},'')")
    return str(xpath(element)).split(" ")  # a name holds no space


class _Unusual(Exception):  # noqa: N818 - not an error: "let parse() handle this document"
    """Raised inside parse_trusted's expat callbacks for anything its fast path does not read."""


def parse_trusted(text: str, root: str, url: str, domain: ErrorDomain) -> Node:
    """parse() for documents virtsnap wrote or ships itself (its metadata store, the test driver's domain).

    Read with the standard library's expat, which loads in a fraction of the time libxml2 (lxml) takes to load
    (~25 ms, more than a whole cold CLI command may take); the result equals parse()'s, namespaces included.
    Anything outside the plain subset virtsnap writes (a DTD, entity, comment, processing instruction, CDATA
    section, XML declaration, a declaration of the "xml" prefix, a document over the size limits, or one expat
    refuses) goes to parse(), so that errors and limits stay parse()'s own.
    """
    if len(text) > MAX_XML_BYTES or "\x00" in text:
        return parse(text, root, url, domain)
    from xml.parsers import expat  # pyexpat: a C module, loaded in well under a millisecond

    # Namespace processing on, so that an undeclared prefix is an error here as in libxml2 (then parse() reports
    # it); with namespace_prefixes, a namespaced name reads "URI\x01local\x01prefix" ("URI\x01local" in a default
    # namespace), and declarations come to declare() just before their element's start().
    parser = expat.ParserCreate(namespace_separator="\x01")  # a character no XML 1.0 document contains
    parser.namespace_prefixes = True
    parser.ordered_attributes = True  # attributes in document order, as lxml gives them
    parser.buffer_text = True
    stack: list[tuple[Node, list[str]]] = []
    top: list[Node] = []
    declarations: list[tuple[str | None, str | None]] = []
    count = 0

    def unusual(*_: object) -> None:
        raise _Unusual

    def declare(prefix: str | None, uri: str | None) -> None:
        # libxml2 records no declaration of "xml", and refuses URIs its URI parser refuses: anything but a plain
        # absolute URI (or undeclaring the default namespace) is left to parse().
        if prefix == "xml" or (uri and not _plain_uri(uri)):
            raise _Unusual
        declarations.append((prefix, uri))

    def start(name: str, attributes: list[str]) -> None:
        nonlocal count
        count += 1
        if (len(stack) > MAX_DEPTH or count > MAX_ELEMENTS
                or len(attributes) + 2 * len(declarations) > 2 * MAX_ATTRIBUTES or (count == 1 and name != root)):
            raise _Unusual
        if declarations or "\x01" in name or any("\x01" in attributes[i] for i in range(0, len(attributes), 2)):
            attrs = {(f"xmlns:{prefix}" if prefix else "xmlns"): uri or "" for prefix, uri in declarations}
            declarations.clear()
            for i in range(0, len(attributes), 2):
                attrs[_qualified(attributes[i])] = attributes[i + 1]
            node = Node(_qualified(name), attrs)
        else:
            node = Node(name, {attributes[i]: attributes[i + 1] for i in range(0, len(attributes), 2)})
        (stack[-1][0].children if stack else top).append(node)
        stack.append((node, []))

    def end(name: str) -> None:
        node, text = stack.pop()
        if text and not node.children:
            node.text = "".join(text)

    def characters(data: str) -> None:
        if stack:  # text after a child (a tail) is collected too, and dropped: that element has children
            stack[-1][1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.StartNamespaceDeclHandler = declare
    for handler in ("CommentHandler", "ProcessingInstructionHandler", "StartDoctypeDeclHandler",
                    "EntityDeclHandler", "StartCdataSectionHandler", "XmlDeclHandler", "SkippedEntityHandler",
                    "ExternalEntityRefHandler"):
        setattr(parser, handler, unusual)
    try:
        parser.Parse(text, True)
    except (_Unusual, expat.ExpatError, UnicodeError, ValueError):
        return parse(text, root, url, domain)
    return top[0]


_PCHAR = "-A-Za-z0-9._~!$&'()*+,;=:@"  # RFC 3986 pchar, less percent-encoding
# An absolute URI with an optional authority (a host name and a port) and a path: a subset of what libxml2's
# xmlParseURI accepts, so that a namespace URI it might refuse ("%", a bad port, ...) takes parse()'s path.
_PLAIN_URI = (rf"[A-Za-z][A-Za-z0-9+.-]*:(?://[A-Za-z0-9.-]*(?::[0-9]{{1,5}})?(?:/[{_PCHAR}/]*)?"
              rf"|(?:/?[{_PCHAR}][{_PCHAR}/]*)?)")
_plain_uri_match: Any = None


def _plain_uri(uri: str) -> bool:
    global _plain_uri_match
    if _plain_uri_match is None:  # compiled on first use: most trusted documents declare no namespace
        import re  # as `enum`, which it imports, ~15 M instructions of a cold start

        _plain_uri_match = re.compile(_PLAIN_URI).fullmatch
    return bool(_plain_uri_match(uri)) and uri not in (_XML_NS, "http://www.w3.org/2000/xmlns/")


def _qualified(name: str) -> str:
    """expat's "URI\x01local\x01prefix" or "URI\x01local" (default namespace) as written: "prefix:local", "local"."""
    if "\x01" not in name:
        return name
    parts = name.split("\x01")
    return f"{parts[2]}:{parts[1]}" if len(parts) == 3 else parts[1]


def _convert(element: Any, domain: ErrorDomain, depth: int, declared: dict[Any, list[tuple[str, str]]]) -> Node:
    etree = lxml_etree()
    if depth > MAX_DEPTH:
        raise error(ErrorCode.XML_ERROR, domain, f"document is nested deeper than {MAX_DEPTH} levels")
    tag = element.tag
    if tag[0] == "{":  # namespaced: kept with its prefix (none for a default namespace), as written
        local = tag[tag.index("}") + 1:]
        tag = f"{element.prefix}:{local}" if element.prefix else local
    declarations = declared.get(element, ())
    count = len(element.attrib)
    if count + len(declarations) > MAX_ATTRIBUTES:  # lxml's attrib.items() is quadratic in the count
        raise error(ErrorCode.XML_ERROR, domain, f"element <{tag}> has more than {MAX_ATTRIBUTES} attributes")
    children: list[Node] = []
    for child in element:
        if isinstance(child, etree._Entity):
            raise error(ErrorCode.XML_ERROR, domain, f"entity reference '&{child.name};' is not allowed")
        if not isinstance(child.tag, str):
            continue
        children.append(_convert(child, domain, depth + 1, declared))
    text = element.text
    if children:
        text = None
    attrs = {(f"xmlns:{prefix}" if prefix else "xmlns"): uri for prefix, uri in declarations}
    names = None
    for i, (key, value) in enumerate(element.attrib.items()):
        name = str(key)
        if name[0] == "{":
            uri, _, local = name[1:].partition("}")
            if uri == _XML_NS:
                name = "xml:" + local
            else:
                names = names or _attribute_names(etree, element, count)
                name = names[i]
        attrs[name] = str(value)
    return Node(tag, attrs, text, children)
