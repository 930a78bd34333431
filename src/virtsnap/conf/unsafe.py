"""Characters that hide, reorder or forge text on a terminal, declared once: names holding them are refused
(conf), and the CLI escapes them in whatever it prints (names a hypervisor hands over cannot be refused)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    import re

# C0 and C1 controls, DEL; bidirectional marks, embeddings, overrides and isolates (Trojan Source); line and
# paragraph separators; lone surrogates (bytes that were not UTF-8). Invisible characters (zero width space,
# joiners, BOM) stay: like lookalike letters, they make names look alike but cannot reorder or forge text.
# Every one of them is also "not printable" to str.isprintable(), which checks a whole text in C: text it
# accepts needs no pattern, and `re` is imported and the patterns compiled when first needed (`re` brings `enum`:
# ~15 M instructions, about 3 ms of a cold start; each pattern about 1 ms).
_CONTROLS = frozenset(map(chr, (*range(0x20), *range(0x7F, 0xA0))))
_FORMATTING = "\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a name (the end of an error message), or None."""
    if name.isprintable():
        return None
    if any(c in _CONTROLS for c in name):
        return "it contains control characters"
    import re

    if re.search(f"[{_FORMATTING}]", name):
        return "it contains bidirectional formatting characters or line separators"
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "it is not valid UTF-8"
    return None


def hides_text(char: str) -> bool:
    """Whether one character is one of those above."""
    return not char.isprintable() and _pattern("").match(char) is not None


def _hex(match: re.Match[str]) -> str:
    return "".join(f"\\x{b:02x}" for b in match.group().encode("utf-8", "surrogatepass"))


def terminal_text(text: str, keep: str = "") -> str:
    """`text` safe to print: every unsafe character except those in `keep` (say "\\n\\t" for a message of several
    lines) as `\\xNN` per UTF-8 byte, as virsh's table escapes; once anything is escaped, a literal `\\x` is too,
    so the result reads back unambiguously. Text with nothing to escape is returned as it is."""
    if _printable(text, keep):
        return text
    pattern = _pattern(keep)
    if not pattern.search(text):
        return text
    return pattern.sub(_hex, text.replace("\\x", "\\x5cx"))


def _printable(text: str, keep: str = "\t\n") -> bool:
    """True when `text` has no character to escape, checked in C (most text: a multi-line XML document too)."""
    for char in keep:
        if char in text:
            text = text.replace(char, "")
    return text.isprintable()


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern(keep: str) -> re.Pattern[str]:
    """The unsafe characters without those in `keep` (built once per `keep`)."""
    pattern = _PATTERNS.get(keep)
    if pattern is None:
        import re

        controls = "".join(f"\\x{ord(c):02x}" for c in sorted(_CONTROLS) if c not in keep)
        pattern = _PATTERNS[keep] = re.compile(f"[{controls}{_FORMATTING}\ud800-\udfff]")
    return pattern


def xml_text(document: str) -> str:
    """An XML document safe to print, with the same meaning: unsafe characters XML allows become character
    references (`&#x202e;`); tab and newline stay."""
    if _printable(document) or not _pattern("").search(document):
        return document
    return _pattern("").sub(lambda m: m.group() if m.group() in "\t\n" else f"&#x{ord(m.group()):x};", document)


def json_text(document: str) -> str:
    """A JSON document (json.dumps, ensure_ascii=False) safe to print, with the same meaning: unsafe characters,
    which only occur inside its strings, become `\\uXXXX` escapes."""
    if _printable(document) or not _pattern("").search(document):
        return document
    return _pattern("").sub(lambda m: m.group() if m.group() in "\t\n" else f"\\u{ord(m.group()):04x}", document)
