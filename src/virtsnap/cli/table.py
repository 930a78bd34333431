"""virsh's text layouts: vshTable (column widths by display width, -q drops the header) and vshTreePrint.

Both reproduce tools/vsh-table.c and vsh.c byte for byte, including their trailing spaces.
"""

from __future__ import annotations

from collections.abc import Sequence

from virtsnap.conf.unsafe import hides_text


def _hex(byte: int) -> str:
    # g_snprintf(buf, 5, "\\x%02x", (char)c): a byte >= 0x80 is a negative char, printed as ffffffNN
    # and cut to 4 characters by the buffer size.
    return "\\xff" if byte >= 0x80 else f"\\x{byte:02x}"


def safe_encode(text: str, utf8: bool) -> tuple[str, int]:
    """vshTableSafeEncode: control characters (and a literal `\\x`) become `\\xNN`; returns (text, width)."""
    if text.isascii() and text.isprintable() and "\\x" not in text:
        return text, len(text)  # the common case, without per-character work
    raw = text.encode("utf-8", "surrogateescape")
    out: list[str] = []
    width = 0
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if (b == 0x5C and i + 1 < n and raw[i + 1] == 0x78) or b < 0x20 or b == 0x7F:
            out.append(_hex(b))
            width += 4
            i += 1
            continue
        if b < 0x80:
            out.append(chr(b))
            width += 1
            i += 1
            continue
        length = _utf8_length(raw, i) if utf8 else 0
        if not length:  # invalid multibyte sequence (or a C locale): byte by byte
            out.append(_hex(b))
            width += 4
            i += 1
            continue
        seq = raw[i:i + length]
        char = seq.decode("utf-8")
        if not _printable(char):
            for byte in seq:
                out.append(_hex(byte))
                width += 4
        else:
            out.append(char)
            width += _char_width(char)
        i += length
    return "".join(out), width


def _utf8_length(raw: bytes, i: int) -> int:
    """Length of the valid UTF-8 sequence starting at raw[i], or 0."""
    for length in (2, 3, 4):
        try:
            raw[i:i + length].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return length
    return 0


def _printable(char: str) -> bool:
    """glibc iswprint for a non-ASCII character: not a control, surrogate, unassigned or separator; and not a
    bidi override or line separator either (virtsnap refuses them in names, but a hypervisor's may hold
    them: virsh would print them raw)."""
    import unicodedata

    return unicodedata.category(char) not in ("Cc", "Cs", "Cn", "Zl", "Zp", "Co") and not hides_text(char)


def _char_width(char: str) -> int:
    """g_unichar_iszerowidth -> 0, g_unichar_iswide -> 2, else 1."""
    import unicodedata

    code = ord(char)
    category = unicodedata.category(char)
    if code != 0x00AD and (category in ("Mn", "Me", "Cf") or 0x1160 <= code < 0x1200 or code == 0x200B):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


class Table:
    """vshTable: a header row and data rows of strings, printed with virsh's padding."""

    def __init__(self, *header: str) -> None:
        self.rows: list[Sequence[str]] = [header]

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.rows[0]):
            raise ValueError("a row must have as many cells as the header")
        self.rows.append(cells)

    def render(self, header: bool = True, utf8: bool = True) -> str:
        ncols = len(self.rows[0])
        maxwidths = [0] * ncols
        encoded: list[list[tuple[str, int]]] = []
        for index, row in enumerate(self.rows):
            cells = [safe_encode(cell, utf8) for cell in row]
            encoded.append(cells)
            if index == 0 and not header:
                continue
            for col, (_, width) in enumerate(cells):
                if width > maxwidths[col]:
                    maxwidths[col] = width
        lines: list[str] = []

        def line(cells: list[tuple[str, int]]) -> str:
            parts: list[str] = []
            for col, (text, width) in enumerate(cells):
                parts.append(" " + text)
                if col < ncols - 1:
                    parts.append(" " * (maxwidths[col] - width + 2))
            return "".join(parts) + "\n"

        if header:
            lines.append(line(encoded[0]))
            lines.append("-" * sum(w + 3 for w in maxwidths) + "\n")
        for cells in encoded[1:]:
            lines.append(line(cells))
        return "".join(lines)


def render_forest(names: Sequence[str], parents: Sequence[str | None], shown: Sequence[str] | None = None) -> str:
    """vshTreePrint for every root (an entry whose parent is None), in list order, children in list order.

    One pass over the entries builds the child lists; an entry whose parent is not listed is not printed.
    `shown`: what to print for each entry (its name escaped), when that differs from the name.
    """
    children = _child_index(names, parents)
    out: list[str] = []
    for index, parent in enumerate(parents):
        if parent is None:
            _render_into(out, names if shown is None else shown, children, index)
    return "".join(out)


def _child_index(names: Sequence[str], parents: Sequence[str | None]) -> dict[int, list[int]]:
    """Entry index -> indexes of its children, in list order (a name is looked up once per entry)."""
    # a name listed twice (never, in a listing) maps to its first entry
    position = dict(zip(reversed(names), range(len(names) - 1, -1, -1), strict=True))
    children: dict[int, list[int]] = {}
    for index, parent in enumerate(parents):
        if parent is not None:
            at = position.get(parent)
            if at is None or at == index:
                continue
            kids = children.get(at)
            if kids is None:
                children[at] = [index]
            else:
                kids.append(index)
    return children


def render_tree(names: Sequence[str], parents: Sequence[str | None], root: int) -> str:
    """vshTreePrint for the entry `root`: its subtree, children in list order, virsh's indentation."""
    out: list[str] = []
    _render_into(out, names, _child_index(names, parents), root)
    return "".join(out)


def _render_into(out: list[str], names: Sequence[str], children: dict[int, list[int]], root: int) -> None:
    """Pre-order with an explicit stack (a chain of thousands of snapshots must not hit Python's recursion
    limit); a first child is printed straight after its parent, its later siblings wait on the stack. Each
    entry sits in one child list, so every entry is printed at most once, even for a malformed forest.
    virsh's layout: "+- NAME" under a "|" line, a blank line after the last leaf of a branch."""
    append, get = out.append, children.get
    append(names[root] + "\n")
    kids = get(root)
    if not kids:
        append("\n")
        return
    append("  |\n")
    indent = "  "  # before the "+- " of the children being printed
    pending: list[tuple[int, str, bool]] = []  # later siblings: (entry, indent, whether it is the last child)
    while True:
        count = len(kids)
        if count > 1:
            pending.extend((kids[k], indent, k == count - 1) for k in range(count - 1, 0, -1))
        entry, last = kids[0], count == 1
        while True:
            append(f"{indent}+- {names[entry]}\n")
            below = indent + ("  " if last else "| ")
            kids = get(entry)
            if kids:
                append(below + "  |\n")
                indent = below + "  "
                break
            if last:
                append(below + "\n")
            if not pending:
                return
            entry, indent, last = pending.pop()
