"""Print a module's libvirt-python surface as JSON: public names, VIR_* values, and every class's methods
with their parameter names and defaults. Run by the surface test under each interpreter."""

import importlib
import inspect
import json
import sys

# libvirt.py's own imports (typing helpers, the C module): not part of the API a program calls.
NOT_API = {"Any", "Callable", "Dict", "IO", "List", "Optional", "Tuple", "Type", "TypeVar", "TracebackType",
           "Union", "overload", "annotations"}


def params(fn):
    if not inspect.isfunction(fn):
        return "builtin"
    sig = inspect.signature(fn)
    return [[p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default)]
            for p in sig.parameters.values()]


def dump(module):
    out = {"constants": {}, "functions": {}, "classes": {}}
    for name in dir(module):
        value = getattr(module, name)
        if name.startswith("_") or name in NOT_API or inspect.ismodule(value):
            continue
        if name.startswith("VIR_"):
            out["constants"][name] = value
        elif inspect.isclass(value):
            out["classes"][name] = {m: params(getattr(value, m)) for m in dir(value)
                                    if not m.startswith("_") and callable(getattr(value, m))}
        elif callable(value):
            out["functions"][name] = params(value)
    return out


if __name__ == "__main__":
    json.dump(dump(importlib.import_module(sys.argv[1])), sys.stdout, sort_keys=True)
