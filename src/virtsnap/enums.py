"""Enum, IntEnum and IntFlag as cheap to make as plain classes: what virtsnap's enumerations use of them.

A cold CLI command cannot afford the standard library's: making virtsnap's ~200 members with `enum` cost 20 M
instructions (~5 ms), more than the rest of the package's classes together, and importing `enum` itself 8 M.
The checker sees the standard classes (so members keep their types); at run time these keep their behaviour
where virtsnap relies on it: members are singletons (`Cls(value) is Cls.NAME`), aliases share their first
member, iteration skips aliases, `__members__` and `_value2member_map_` as in `enum`, `repr`
``<Cls.NAME: value>``, int members compare, hash, format and print as their int (3.11's IntEnum and IntFlag),
flags combine with ``| & ^`` into members or pseudo-members named ``A|B`` and ``~`` keeps the defined bits only.
An unknown value raises ``ValueError("X is not a valid Cls")`` (flags accept any int, as IntFlag does).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from enum import Enum, IntEnum, IntFlag
    from typing import Any, TypeVar

    E = TypeVar("E", bound=Enum)
    D = TypeVar("D")
else:
    class _EnumType(type):
        """Turns a class body's public plain values into members."""

        def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            cls = super().__new__(mcls, name, bases, namespace)
            members: dict[str, Any] = {}
            by_value: dict[Any, Any] = {}
            for key, value in namespace.items():
                if key[0] == "_" or callable(value) or hasattr(value, "__get__"):
                    continue
                member = by_value.get(value)
                if member is None:
                    member = by_value[value] = cls._make(value, key)
                members[key] = member
                type.__setattr__(cls, key, member)
            cls.__members__ = members
            cls._value2member_map_ = by_value
            cls._unique_ = tuple(by_value.values())
            mask = 0
            for member in cls._unique_:
                if isinstance(member, int):
                    mask |= int(member)  # int(): a flag's own | would make members of a class half made
            cls._flag_mask_ = mask
            return cls

        def __iter__(cls) -> Any:
            return iter(cls._unique_)

        def __len__(cls) -> int:
            return len(cls._unique_)

        def __getitem__(cls, name: str) -> Any:
            return cls.__members__[name]

        def __contains__(cls, member: object) -> bool:
            return isinstance(member, cls) and member._name_ in cls.__members__

        def __call__(cls, value: Any) -> Any:
            member = cls._value2member_map_.get(value)
            if member is not None:
                return member
            return cls._missing(value)

        def __repr__(cls) -> str:
            return f"<enum {cls.__name__!r}>"

        def __setattr__(cls, name: str, value: Any) -> None:
            if name in cls.__dict__.get("__members__", ()):
                raise AttributeError(f"cannot reassign member {name!r}")
            super().__setattr__(name, value)

    class Enum(metaclass=_EnumType):
        """A member: a name and a value of any type."""

        __slots__ = ("_name_", "_value_")

        @classmethod
        def _make(cls, value: Any, name: str | None) -> Any:
            member = object.__new__(cls)
            member._name_, member._value_ = name, value
            return member

        @classmethod
        def _missing(cls, value: Any) -> Any:
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")

        @property
        def name(self) -> Any:
            return self._name_

        @property
        def value(self) -> Any:
            return self._value_

        def __repr__(self) -> str:
            return f"<{type(self).__name__}.{self._name_}: {self._value_!r}>"

        def __str__(self) -> str:
            return f"{type(self).__name__}.{self._name_}"

        def __format__(self, spec: str) -> str:
            return format(str(self), spec)

        def __hash__(self) -> int:
            return hash(self._name_)

        def __reduce_ex__(self, protocol: Any) -> Any:
            return type(self), (self._value_,)

        def __copy__(self) -> Any:
            return self

        def __deepcopy__(self, memo: Any) -> Any:
            return self

    class IntEnum(int, metaclass=_EnumType):
        """A member that is its int value."""

        @classmethod
        def _make(cls, value: Any, name: str | None) -> Any:
            member = int.__new__(cls, value)
            member._name_, member._value_ = name, int(value)
            return member

        _missing = Enum.__dict__["_missing"]
        name = Enum.name
        value = Enum.value
        __reduce_ex__ = Enum.__reduce_ex__
        __copy__ = Enum.__copy__
        __deepcopy__ = Enum.__deepcopy__

        def __repr__(self) -> str:
            return f"<{type(self).__name__}.{self._name_}: {int(self)}>"

        __str__ = int.__repr__
        __format__ = int.__format__
        __hash__ = int.__hash__

    class IntFlag(IntEnum):
        """Members are bits; any int is a value, combinations are pseudo-members named ``A|B``."""

        @classmethod
        def _missing(cls, value: Any) -> Any:
            value = int(value)
            names = [m._name_ for m in cls._unique_ if int(m).bit_count() == 1 and int(m) & value]
            known = value and value & ~cls._flag_mask_ == 0
            return cls._value2member_map_.setdefault(value, cls._make(value, "|".join(names) if known else None))

        def __repr__(self) -> str:
            name = self._name_
            return f"<{type(self).__name__}.{name}: {int(self)}>" if name else f"<{type(self).__name__}: {int(self)}>"

        def __or__(self, other: Any) -> Any:
            return type(self)(int(self) | int(other)) if isinstance(other, int) else NotImplemented

        def __and__(self, other: Any) -> Any:
            return type(self)(int(self) & int(other)) if isinstance(other, int) else NotImplemented

        def __xor__(self, other: Any) -> Any:
            return type(self)(int(self) ^ int(other)) if isinstance(other, int) else NotImplemented

        __ror__, __rand__, __rxor__ = __or__, __and__, __xor__

        def __invert__(self) -> Any:
            return type(self)(self._flag_mask_ & ~int(self))



def member(cls: type[E], value: object, default: D) -> E | D:
    """The member of `cls` whose value is `value`, else `default` (a code from a newer libvirt or peer)."""
    try:
        return cls(value)
    except ValueError:
        return default


__all__ = ["Enum", "IntEnum", "IntFlag", "member"]
