"""`SubmissionPolicy`: what submitted code may import and use, configurable in nbgrader_config.py.

    c.SubmissionPolicy.allowed_imports = [...]                      # the course-wide allow-list
    c.SubmissionPolicy.assignment_allowed_imports = {"ps5_train_cnn": ["sklearn"]}
    c.SubmissionPolicy.assignment_denied_imports = {"ps1_convolution": ["numpy"]}

Module names match as prefixes on whole dotted components: ``"torch"`` allows ``torch.nn`` and
``torch.nn.functional``; ``"torch.jit"`` in a deny-list denies ``torch.jit`` and everything
below it. A deny-list entry beats an allow-list entry. Private modules (a component starting
with ``_``, e.g. ``torch._C``) are never allowed, whatever the lists say.
"""

from __future__ import annotations

from collections.abc import Iterable

from traitlets import Bool, Dict, List, Unicode
from traitlets.config import LoggingConfigurable

# Modules a student's code may import (and reach through attributes, e.g. ``torch.nn``).
DEFAULT_ALLOWED_IMPORTS = (
    "__future__",
    "math",
    "cmath",
    "random",
    "statistics",
    "itertools",
    "functools",
    "collections",
    "dataclasses",
    "typing",
    "copy",
    "time",
    "re",
    "heapq",
    "bisect",
    "fractions",
    "warnings",
    "torch",
    "torchvision",
    "numpy",
    "matplotlib",
    "tqdm",
    "course_lib",
)

# Parts of allowed packages that reach outside the Python sandbox of the policy: native code
# (cpp_extension, ctypeslib, f2py), operator registration and interception (library, overrides,
# fx, jit, export, compiler), process-wide hooks (autograd.graph), unpickling (serialization,
# hub, package), processes and threads (multiprocessing, distributed), raw memory views
# (numpy's stride tricks read any address).
DEFAULT_DENIED_IMPORTS = (
    "torch.utils.cpp_extension",
    "torch.library",
    "torch.overrides",
    "torch.fx",
    "torch.jit",
    "torch.export",
    "torch.compiler",
    "torch.onnx",
    "torch.hub",
    "torch.package",
    "torch.serialization",
    "torch.multiprocessing",
    "torch.distributed",
    "torch.autograd.graph",
    "torch.utils.hooks",
    "torch.utils.backcompat",
    "torch.utils.benchmark",
    "torch.utils.bottleneck",
    "torch.utils.model_zoo",
    "torch.profiler",
    "torch.autograd.profiler",
    "torch.autograd.profiler_legacy",
    "torch.nn.utils.parametrize",
    "torchvision.datasets",
    "torchvision.io",
    "torchvision.models",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.lib.stride_tricks",
)

# Functions and objects of allowed modules that change process-wide state the tests rely on,
# reach operators past the dispatcher's Python API (torch.ops), read files (unpickling runs
# arbitrary code), print / parse the source of the functions they are given (a hidden
# test's lambda handed to student code), set attributes of any function they are given
# (functools.update_wrapper / wraps: `__wrapped__` on a library function), or hand back the
# classes named in annotations as values (typing.get_type_hints / get_args, dataclasses.fields,
# singledispatch registries). Denied wherever
# reached, by identity (aliases and re-exports included).
# Routes around an exercise that the operator checks cannot see (numpy.convolve for a
# convolution exercise) belong in `assignment_denied_names` of the course's config.
DEFAULT_DENIED_NAMES = (
    "torch.load",
    "torch.from_file",
    "torch.compile",
    "torch.set_default_dtype",
    "torch.set_default_tensor_type",
    "torch.set_default_device",
    "torch.set_flush_denormal",
    "torch.set_float32_matmul_precision",
    "torch.get_device_module",
    "torch.ops",
    "torch.classes",
    "torch.UntypedStorage.from_file",
    "torch.nn.modules.module.register_module_forward_pre_hook",
    "torch.nn.modules.module.register_module_forward_hook",
    "torch.nn.modules.module.register_module_backward_hook",
    "torch.nn.modules.module.register_module_full_backward_pre_hook",
    "torch.nn.modules.module.register_module_full_backward_hook",
    "torch.nn.modules.module.register_module_buffer_registration_hook",
    "torch.nn.modules.module.register_module_module_registration_hook",
    "torch.nn.modules.module.register_module_parameter_registration_hook",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.genfromtxt",
    "numpy.fromfile",
    "numpy.memmap",
    "numpy.lib.stride_tricks.as_strided",
    "numpy.lib.stride_tricks.sliding_window_view",
    "numpy.info",
    "functools.update_wrapper",
    "functools.wraps",
    "functools.singledispatch",
    "functools.singledispatchmethod",
    "typing.get_type_hints",
    "typing.get_args",
    "typing.get_origin",
    "typing.get_overloads",
    "dataclasses.fields",
    "course_lib.source.show_source",
    "course_lib.checks.calls_in_source",
    "course_lib.checks.uses_any",
    "course_lib.checks.refers_to_any",
    "course_lib.checks.own_code_uses",
)

# Library classes a student's class may derive from (directly or through these classes'
# subclasses), besides object and the student's own classes.
DEFAULT_ALLOWED_BASES = (
    "torch.nn.Module",
    "torch.optim.Optimizer",
    "torch.optim.lr_scheduler.LRScheduler",
    "torch.autograd.Function",
    "torch.utils.data.Dataset",
    "torch.utils.data.Sampler",
    "Exception",
)


def module_matches(module: str, prefixes: Iterable[str]) -> bool:
    """True when ``module`` is one of ``prefixes`` or lies below one (whole components)."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


class SubmissionPolicy(LoggingConfigurable):
    """The static policy every student code cell passes before a submission is executed."""

    enabled = Bool(
        True, help="Check submissions before grading (False only for trusted code)."
    ).tag(config=True)
    allowed_imports = List(
        Unicode(),
        default_value=list(DEFAULT_ALLOWED_IMPORTS),
        help="Modules (with everything below them) that submitted code may import.",
    ).tag(config=True)
    denied_imports = List(
        Unicode(),
        default_value=list(DEFAULT_DENIED_IMPORTS),
        help="Modules denied even inside an allowed package (beats allowed_imports).",
    ).tag(config=True)
    assignment_allowed_imports = Dict(
        value_trait=List(Unicode()),
        default_value={},
        help="Extra allowed modules per assignment id, e.g. {'ps6_training': ['PIL']}.",
    ).tag(config=True)
    assignment_denied_imports = Dict(
        value_trait=List(Unicode()),
        default_value={},
        help="Extra denied modules per assignment id, e.g. {'ps1_convolution': ['numpy']}.",
    ).tag(config=True)
    denied_names = List(
        Unicode(),
        default_value=list(DEFAULT_DENIED_NAMES),
        help="Dotted functions / classes denied wherever they are reached (by identity).",
    ).tag(config=True)
    assignment_denied_names = Dict(
        value_trait=List(Unicode()),
        default_value={},
        help="Extra denied functions per assignment id, e.g. "
        "{'ps1_convolution': ['numpy.convolve']}.",
    ).tag(config=True)
    allowed_bases = List(
        Unicode(),
        default_value=list(DEFAULT_ALLOWED_BASES),
        help="Library classes a student's class may derive from (and their subclasses).",
    ).tag(config=True)

    def allowed_for(self, assignment: str) -> tuple[str, ...]:
        return (*self.allowed_imports, *self.assignment_allowed_imports.get(assignment, ()))

    def denied_for(self, assignment: str) -> tuple[str, ...]:
        return (*self.denied_imports, *self.assignment_denied_imports.get(assignment, ()))

    hooks_allowed_in = List(
        Unicode(),
        default_value=[],
        help="Assignments whose students may register hooks (register_forward_hook, "
        "Tensor.register_hook, ...), e.g. for Grad-CAM. Elsewhere hooks are denied: a hook on "
        "a tensor or module the test passed in changes what the test computes afterwards.",
    ).tag(config=True)

    def denied_names_for(self, assignment: str) -> tuple[str, ...]:
        return (*self.denied_names, *self.assignment_denied_names.get(assignment, ()))

    def module_allowed(self, module: str, assignment: str) -> bool:
        """May student code import (or reach) ``module`` in ``assignment``?"""
        if any(part.startswith("_") for part in module.split(".")) and module != "__future__":
            return False
        if module_matches(module, self.denied_for(assignment)):
            return False
        return module_matches(module, self.allowed_for(assignment))
