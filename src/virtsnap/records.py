"""Value semantics for small slotted classes: the records drivers, the API and the XML layer pass around.

Neither dataclasses nor typing.NamedTuple: a cold CLI command cannot afford them. Importing dataclasses costs
~20 ms (it imports inspect), and each NamedTuple whose annotations are strings (``from __future__ import
annotations``) compiles them at class creation, the interpreter's first compile() alone ~3.5 ms. A record is a
class with `_fields`, `__slots__ = _fields` and an explicit ``__init__``; these bases add the rest.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, ClassVar



class Record:
    """Equality and repr over `_fields`, in their order. Mutable, hence unhashable."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:  # defining __eq__ leaves the class without __hash__
        return isinstance(other, Record) and type(other) is type(self) and self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"


class Frozen(Record):
    """A Record whose fields are set once, by ``__init__``, and hashable (if its values are)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, name):
            raise AttributeError(f"cannot assign to field '{name}' of {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}' of {type(self).__name__}")

    def __hash__(self) -> int:
        return hash(self._values())
