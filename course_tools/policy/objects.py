"""What library names stand for, found in the grader's own process.

The policy resolves names like ``nn.Module`` or ``torch.optim.Adam`` to the real objects (by
importing the *allowed* modules the notebook imports) to decide: is this a module, a class
that code could change (a Python class, unlike ``dict`` or ``torch.dtype``), a denied function?
Nothing the student wrote is ever imported or run here: only modules on the allow-list, by name.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import types
from collections.abc import Iterable

from course_tools.policy.config import SubmissionPolicy, module_matches

MISSING = object()

# Objects whose __module__ lies here are never reachable from student code, whatever chain of
# attributes leads to them (``torch.sys``, ``course_lib.checks.inspect.getsource``,
# ``some_module.os.system``): they reach outside the policy (processes, files, frames,
# the interpreter, IPython, the gradebook).
FORBIDDEN_MODULES = (
    "builtins",
    "os",
    "posix",
    "nt",
    "sys",
    "subprocess",
    "importlib",
    "inspect",
    "ctypes",
    "_ctypes",
    "gc",
    "pickle",
    "_pickle",
    "copyreg",
    "marshal",
    "shelve",
    "dill",
    "joblib",
    "types",
    "io",
    "_io",
    "shutil",
    "pathlib",
    "glob",
    "tempfile",
    "socket",
    "threading",
    "_thread",
    "multiprocessing",
    "concurrent",
    "asyncio",
    "signal",
    "atexit",
    "weakref",
    "_weakref",
    "code",
    "codeop",
    "linecache",
    "traceback",
    "tokenize",
    "runpy",
    "pdb",
    "bdb",
    "dis",
    "ast",
    "symtable",
    "operator",
    "_operator",
    "string",
    "logging",
    "unittest",
    "site",
    "sysconfig",
    "resource",
    "mmap",
    "faulthandler",
    "tracemalloc",
    "sqlite3",
    "IPython",
    "ipykernel",
    "jupyter_client",
    "zmq",
    "nbgrader",
    "nbformat",
    "nbclient",
    "course_tools",
)

# Py_TPFLAGS_IMMUTABLETYPE: set on built-in types (dict, float, torch.dtype, ...), whose
# attributes nobody can change.
_IMMUTABLE_TYPE = 1 << 8


def is_mutable_class(obj: object) -> bool:
    """A class whose attributes code could replace (``torch.Tensor``, ``nn.Module``)."""
    return isinstance(obj, type) and not (obj.__flags__ & _IMMUTABLE_TYPE)


def object_module(obj: object) -> str | None:
    """The module a function or class says it comes from (``None`` for plain data)."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) or callable(obj):
        module = getattr(obj, "__module__", None)
        return module if isinstance(module, str) else None
    return None


class Objects:
    """Resolve dotted names to objects, importing only modules the policy allows."""

    def __init__(self, policy: SubmissionPolicy, assignment: str) -> None:
        self.policy = policy
        self.assignment = assignment
        self._denied: dict[int, tuple[str, object]] = {}
        for dotted in policy.denied_names_for(assignment):
            obj = self.lookup(dotted, trusted=True)
            if obj is not MISSING:
                self._denied[id(obj)] = (dotted, obj)  # keep obj alive: ids stay unique

    # -- modules --------------------------------------------------------------------------------
    def module_allowed(self, module: str) -> bool:
        return self.policy.module_allowed(module, self.assignment)

    def module_forbidden_everywhere(self, module: str) -> bool:
        """Modules whose objects student code must never hold, reached however."""
        return module_matches(module, FORBIDDEN_MODULES) or module_matches(
            module, self.policy.denied_for(self.assignment)
        )

    def import_module(self, name: str, trusted: bool = False) -> object:
        if not trusted and not self.module_allowed(name):
            return MISSING
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a missing optional package, a broken one: unknown)
            return MISSING

    # -- objects --------------------------------------------------------------------------------
    def attribute(self, obj: object, name: str, trusted: bool = False) -> object:
        """``obj.name`` without running properties; submodules are imported when allowed."""
        if obj is MISSING:
            return MISSING
        try:
            value = inspect.getattr_static(obj, name)
        except AttributeError:
            value = MISSING
        if isinstance(obj, types.ModuleType):
            if value is MISSING or not isinstance(value, types.ModuleType):
                submodule = f"{obj.__name__}.{name}"
                module = self.import_module(submodule, trusted) if value is MISSING else MISSING
                if module is not MISSING:
                    return module
            if value is MISSING and not name.startswith("_"):
                try:  # a lazily created attribute (module-level __getattr__)
                    value = getattr(obj, name)
                except Exception:  # noqa: BLE001
                    value = MISSING
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        return value

    def lookup(self, dotted: str, trusted: bool = False) -> object:
        """The object ``dotted`` names (``"torch.nn.Module"``, ``"Exception"``), or MISSING."""
        parts = dotted.split(".")
        if len(parts) == 1 and hasattr(builtins, dotted):
            return getattr(builtins, dotted)
        for split in range(len(parts), 0, -1):
            obj = self.import_module(".".join(parts[:split]), trusted)
            if obj is MISSING:
                continue
            for part in parts[split:]:
                obj = self.attribute(obj, part, trusted)
            return obj
        return MISSING

    def denied_name(self, obj: object) -> str | None:
        """The configured dotted name ``obj`` is denied as, if any."""
        entry = self._denied.get(id(obj))
        return entry[0] if entry is not None and entry[1] is obj else None

    def candidates(self, targets: Iterable[str]) -> list[object]:
        """The objects a set of import targets resolve to (unresolvable ones left out)."""
        found = []
        for target in sorted(targets):
            obj = self.lookup(target)
            if obj is not MISSING:
                found.append(obj)
        return found
