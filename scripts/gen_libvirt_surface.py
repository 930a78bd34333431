#!/usr/bin/env python3
"""Generate src/virtsnap/surface.py: libvirt-python 9.0's whole surface (constants, classes, methods); the
classes virtsnap implements stay there, the rest goes to surface_more.py, which surface.py loads at first use.

Inputs: libvirt's API description (Debian libvirt-dev: /usr/share/libvirt/api/libvirt-api.xml) gives every
VIR_* constant's value and which source file (hence which error domain) each C function belongs to;
python3-libvirt's libvirt.py (read as text, never imported) gives the Python names, parameter names and
defaults that the XML does not describe. The same for libvirt_qemu (surface_qemu.py).
Usage: scripts/gen_libvirt_surface.py [--check] [DIR]
With --check it exits 1 when a file differs from what it would write (the tests run it that way).
"""

from __future__ import annotations

import argparse
import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

API_DIR = Path("/usr/share/libvirt/api")
PY_DIR = Path("/usr/lib/python3/dist-packages")
SRC = Path(__file__).resolve().parent.parent / "src" / "virtsnap"
# (libvirt-python module, its API description, the C module it calls, the generated file)
MODULES = (("libvirt", "libvirt-api.xml", "libvirtmod", "surface.py"),
           ("libvirt_qemu", "libvirt-qemu-api.xml", "libvirtmod_qemu", "surface_qemu.py"))

# The error domain each libvirt-*.c file reports its "not supported" errors under (its VIR_FROM_THIS).
FILE_DOMAIN = {
    "libvirt-host": "VIR_FROM_DOMAIN",
    "libvirt-domain": "VIR_FROM_DOMAIN",
    "libvirt-domain-snapshot": "VIR_FROM_DOMAIN_SNAPSHOT",
    "libvirt-domain-checkpoint": "VIR_FROM_DOMAIN_CHECKPOINT",
    "libvirt-network": "VIR_FROM_NETWORK",
    "libvirt-storage": "VIR_FROM_STORAGE",
    "libvirt-nodedev": "VIR_FROM_NODEDEV",
    "libvirt-interface": "VIR_FROM_INTERFACE",
    "libvirt-nwfilter": "VIR_FROM_NWFILTER",
    "libvirt-secret": "VIR_FROM_SECRET",
    "libvirt-stream": "VIR_FROM_STREAMS",
    "libvirt-qemu": "VIR_FROM_DOMAIN",
}
# The classes virtsnap implements (api.py subclasses them): in surface.py, the rest in surface_more.py.
IMPLEMENTED = ("virConnect", "virDomain", "virDomainSnapshot")
# surface_more.py's name for the methods of an implemented class: virConnect's are virConnectStubs
STUBS = "Stubs"
# The class whose C prefix names a method libvirt.py implements in Python only (no libvirtmod call).
CLASS_PREFIX = {"virConnect": "virConnect"}


def read_constants(roots: list[ET.Element], python_names: set[str],
                   python_values: dict[str, object]) -> dict[str, object]:
    """Every VIR_* constant libvirt-python exports, valued from the XML (enum aliases resolved)."""
    raw = {e.get("name", ""): e.get("value", "") for root in roots for e in root.iter("enum")}
    strings = {m.get("name", ""): m.get("string") for root in roots for m in root.iter("macro")
               if m.get("string") is not None}

    def resolve(name: str, depth: int = 0) -> object:
        value = raw[name]
        try:
            return int(value, 0)
        except ValueError:
            if depth > 10 or value not in raw:
                raise
            return resolve(value, depth + 1)

    out: dict[str, object] = {}
    for name in sorted(python_names):
        if name in raw:
            out[name] = resolve(name)
        elif name in strings:
            out[name] = strings[name]
        else:  # defined by libvirt-python itself (e.g. typed-parameter field names spelled in the binding)
            out[name] = python_values[name]
    return out


def python_constants(tree: ast.Module) -> dict[str, object]:
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.startswith("VIR_"):
                values[name] = ast.literal_eval(node.value)
    return values


def c_name(fn: ast.FunctionDef, owner: str, cmod: str = "libvirtmod") -> str:
    calls = [n.attr for n in ast.walk(fn)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == cmod]
    calls = [c for c in calls if not c.endswith("_pointer") and not c.endswith("Free")] or calls
    if calls:
        return calls[0]
    return owner + fn.name[:1].upper() + fn.name[1:]


def signature(fn: ast.FunctionDef, method: bool) -> str:
    """The parameter list with libvirt-python's names and defaults, every parameter typed Any."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    parts = []
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        if method and i == 0:
            parts.append(arg.arg)
            continue
        text = f"{arg.arg}: Any"
        if default is not None:
            text += f" = {ast.unparse(default)}"
        parts.append(text)
    if args.vararg:
        parts.append(f"*{args.vararg.arg}: Any")
    return ", ".join(parts)


def domain_of(name: str, files: dict[str, str]) -> str:
    return FILE_DOMAIN.get(files.get(name, ""), "VIR_FROM_NONE")


def generate(module: str = "libvirt") -> dict[str, str]:
    """The files to write for `module`, by name."""
    _, xml_name, cmod, filename = next(m for m in MODULES if m[0] == module)
    root = ET.parse(API_DIR / xml_name).getroot()
    main_root = ET.parse(API_DIR / "libvirt-api.xml").getroot()
    files = {f.get("name", ""): f.get("file", "") for f in root.iter("function")}
    domains = {e.get("name", ""): int(e.get("value", "0"), 0) for e in main_root.iter("enum")
               if (e.get("name") or "").startswith("VIR_FROM_")}
    tree = ast.parse((PY_DIR / f"{module}.py").read_text())
    py_values = python_constants(tree)
    constants = read_constants([root, main_root], set(py_values), py_values)
    mismatched = [n for n, v in constants.items() if n in py_values and py_values[n] != v]
    if mismatched:
        raise SystemExit(f"libvirt-api.xml and libvirt.py disagree on {mismatched}")

    header = [
        "# ruff: noqa: E501, N802, N803" + (", N801" if module == "libvirt" else ", B006"),
        "from __future__ import annotations",
        "",
        "from .dispatch import not_supported",
        "",
        "TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's",
        "if TYPE_CHECKING:",
        "    from typing import Any",
        "",
    ]
    note = [f"Written by scripts/gen_libvirt_surface.py from {xml_name} and python3-libvirt's {module}.py; "
            "do not edit.",
            "A method that virtsnap does not implement raises libvirt's VIR_ERR_NO_SUPPORT error naming the "
            "C function."]
    # libvirt's: the classes virtsnap implements are in surface.py, which every command imports, without their
    # methods; those and the rest are in surface_more.py, which surface.py imports at the first use of a name it
    # does not have (LAZY)
    lazy = module == "libvirt"
    lines = [f'"""{module} 9.0\'s surface, generated: every VIR_* constant, class and method with its signature.', "",
             *note, '"""', "", *(LAZY_HEADER if lazy else header),
             *([f"LIBVIR_VERSION_NUMBER = {9_000_000}", ""] if module == "libvirt" else [])]
    more = ([f'"""{module} 9.0\'s surface beyond the classes virtsnap implements: constants, C function names,',
             "the classes and functions virtsnap does not implement (read through surface.py).", "", *note, '"""',
             "", *header] if lazy else lines)
    more += ["CONSTANTS: dict[str, int | str] = {"]
    more += [f"    {name!r}: {value!r}," for name, value in constants.items()]
    more += ["}", ""]

    functions: list[str] = []
    classes: list[str] = []
    c_names: dict[str, tuple[str, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            cname = c_name(node, "vir", cmod)
            domain = domains[domain_of(cname, files)]
            functions.append(node.name)
            more += ["", f"def {node.name}({signature(node, False)}) -> Any:",
                     f"    raise not_supported({cname!r}, {domain})", ""]
        elif isinstance(node, ast.ClassDef) and node.name.startswith("vir"):
            classes.append(node.name)
            out = more
            if lazy and node.name in IMPLEMENTED:
                # surface.py's class is made empty; its methods, made from this one at their first use
                lines += ["", f"class {node.name}({node.name}{STUBS}):",
                          f'    """libvirt.{node.name}\'s methods; the unimplemented ones raise (made from '
                          f'surface_more.{node.name}{STUBS} at the first use of a name the class lacks)."""', ""]
                out += ["", f"class {node.name}{STUBS}:",
                        f'    """libvirt.{node.name}\'s methods, each raising; copied into surface.{node.name} at '
                        'first use."""', ""]
            else:
                out += ["", f"class {node.name}:",
                        f'    """libvirt.{node.name}\'s methods; the unimplemented ones raise."""', ""]
            for fn in node.body:
                if not isinstance(fn, ast.FunctionDef) or fn.name.startswith("_"):
                    continue
                cname = c_name(fn, CLASS_PREFIX.get(node.name, node.name))
                domain = domains[domain_of(cname, files)]
                c_names[f"{node.name}.{fn.name}"] = (cname, domain)
                out += [f"    def {fn.name}({signature(fn, True)}) -> Any:",
                        f"        raise not_supported({cname!r}, {domain})", ""]
    lines += ["", f"FUNCTIONS = {tuple(functions)!r}", f"CLASSES = {tuple(classes)!r}", ""]
    more += [*([""] if lazy else []),
             "# 'class.method' -> (the C function it calls, the error domain its errors carry)",
             "C_NAMES: dict[str, tuple[str, int]] = {"]
    more += [f"    {key!r}: {value!r}," for key, value in c_names.items()]
    more += ["}"]
    if lazy:
        lines += ["", "def __getattr__(name: str) -> Any:",
                  '    """CONSTANTS, C_NAMES and the classes and functions virtsnap does not implement, from '
                  'surface_more',
                  '    at their first use: a cold CLI command needs none of them (about 1.5 ms of its start)."""',
                  "    from . import surface_more", "",
                  "    try:",
                  "        value = globals()[name] = getattr(surface_more, name)",
                  "    except AttributeError:",
                  '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None',
                  "    return value", "",
                  "", "def _fill_stubs() -> bool:",
                  '    """Copies the methods of the implemented classes from surface_more (a class\'s own, and so a',
                  '    subclass\'s, are kept); True if this call did."""',
                  "    global _filled",
                  "    if _filled:",
                  "        return False",
                  "    from . import surface_more", "",
                  f"    for cls in ({', '.join(IMPLEMENTED)}):",
                  f'        for name, fn in vars(getattr(surface_more, cls.__name__ + "{STUBS}")).items():',
                  '            if not name.startswith("__") and name not in vars(cls):',
                  '                fn.__qualname__ = f"{cls.__name__}.{name}"',
                  "                type.__setattr__(cls, name, fn)",
                  "    _filled = True",
                  "    return True"]

    def tidy(text: list[str]) -> str:
        return "\n".join(text).replace("\n\n\n\n", "\n\n\n") + "\n"
    return {filename: tidy(lines), **({"surface_more.py": tidy(more)} if lazy else {})}


# surface.py's header: the implemented classes' bases are, for the checker, surface_more's classes with every
# method, and at run time a class that makes those methods at the first name it lacks (from the class or an
# instance; dir() too). Making them all at import was ~3 M instructions of every cold command.
LAZY_HEADER = [
    "# ruff: noqa: E501, N801, N816",
    "from __future__ import annotations",
    "",
    "TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's",
    "if TYPE_CHECKING:",
    "    from typing import Any",
    "",
    f"    from .surface_more import {', '.join(sorted(name + STUBS for name in IMPLEMENTED))}",
    "else:",
    "    def _made(owner: Any, name: str) -> Any:",
    '        """`name` of a class or an instance once the methods are made, else the AttributeError."""',
    "        if _fill_stubs():",
    "            return getattr(owner, name)",
    '        is_class = isinstance(owner, type)',
    '        what = f"type object {owner.__name__!r}" if is_class else f"{type(owner).__name__!r} object"',
    '        raise AttributeError(f"{what} has no attribute {name!r}", name=name, obj=owner)',
    "",
    "    class _Stubbed(type):",
    "        __getattr__ = _made",
    "",
    "        def __dir__(cls) -> list[str]:",
    "            _fill_stubs()",
    "            return type.__dir__(cls)",
    "",
    "    class _Stubs(metaclass=_Stubbed):",
    "        __getattr__ = _made",
    "",
    "        def __dir__(self) -> list[str]:",
    "            _fill_stubs()",
    "            return object.__dir__(self)",
    "",
    f"    {' = '.join(f'{name}{STUBS}' for name in IMPLEMENTED)} = _Stubs",
    "",
    "_filled = False",
    "",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if OUT is not what would be generated")
    ap.add_argument("out", nargs="?", type=Path, default=SRC, help="the directory to write into")
    args = ap.parse_args()
    stale = 0
    for module, *_ in MODULES:
        for filename, text in generate(module).items():
            out = args.out / filename
            if args.check:
                if not out.exists() or out.read_text() != text:
                    print(f"{out} is stale: run scripts/gen_libvirt_surface.py", file=sys.stderr)
                    stale = 1
            else:
                out.write_text(text)
    return stale


if __name__ == "__main__":
    sys.exit(main())
