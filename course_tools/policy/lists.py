"""What each rule of the policy allows and denies: the lists behind the rules, and the
messages students read (each says what is wrong and what is allowed instead)."""

from __future__ import annotations

import re

FORBIDDEN_BUILTINS = {
    "eval": "runs code from a string",
    "exec": "runs code from a string",
    "compile": "turns a string into code",
    "open": "opens files",
    "breakpoint": "starts a debugger",
    "globals": "exposes the notebook's namespace",
    "locals": "exposes the notebook's namespace",
    "vars": "exposes an object's namespace",
    "setattr": "sets an attribute by a computed name",
    "delattr": "deletes an attribute by a computed name",
    "type": "reaches classes as values (use isinstance(x, cls) to test a type)",
}
IPYTHON_NAMES = {
    "get_ipython",
    "display",
    "In",
    "Out",
    "_ih",
    "_oh",
    "_dh",
    "_i",
    "_ii",
    "_iii",
    "__",
    "___",
}
IPYTHON_HISTORY = re.compile(r"_i?\d+")
ALLOWED_DUNDER_READS = {"__name__", "__qualname__", "__doc__", "__version__"}
ALLOWED_DUNDER_METHODS = {
    "__init__",
    "__post_init__",
    "__call__",
    "__len__",
    "__getitem__",
    "__iter__",
    "__next__",
    "__repr__",
    "__str__",
    "__enter__",
    "__exit__",
}
# The methods a subclass of each allowed library base is meant to write; every other attribute
# of the base (parameters, modules, state_dict, zero_grad, ...) is the library's.
OVERRIDE_HOOKS = {
    "torch.nn.Module": {"__init__", "forward", "extra_repr", "reset_parameters"},
    "torch.optim.Optimizer": {"__init__", "step", "zero_grad"},
    "torch.optim.lr_scheduler.LRScheduler": {"__init__", "get_lr"},
    "torch.autograd.Function": {"forward", "backward", "setup_context", "jvp", "vmap"},
    "torch.utils.data.Dataset": {"__init__", "__len__", "__getitem__"},
    "torch.utils.data.Sampler": {"__init__", "__len__", "__iter__"},
    "Exception": {"__init__", "__str__"},
}
MUTATING_METHODS = {
    "append",
    "extend",
    "insert",
    "remove",
    "pop",
    "popitem",
    "clear",
    "update",
    "setdefault",
    "add",
    "discard",
    "sort",
    "reverse",
    "difference_update",
    "intersection_update",
    "symmetric_difference_update",
}
_FRAMES = "reaches the interpreter's frames and code objects"
DENIED_ATTRIBUTES = {
    "mro": "lists classes as values",
    **dict.fromkeys(
        ["gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await"], _FRAMES
    ),
    **dict.fromkeys(["ag_frame", "ag_code", "ag_await", "tb_frame", "tb_next"], _FRAMES),
    **dict.fromkeys(["f_globals", "f_locals", "f_builtins", "f_back", "f_code"], _FRAMES),
    **dict.fromkeys(["co_consts", "co_code", "co_names", "func_globals"], _FRAMES),
    # The kernel's own objects, reachable from library objects: tqdm's output stream (`.fp` is
    # the kernel's stderr, whose session can forge messages to the grader), the widgets of
    # tqdm.auto (`.container`, `.comm` lead to the kernel and its shell).
    **dict.fromkeys(
        ["fp", "container", "comm", "comms", "session", "pub_thread", "parent_header"],
        "reaches the notebook kernel's own objects",
    ),
    **dict.fromkeys(
        ["socket", "iopub_socket", "shell", "user_ns", "user_global_ns", "displayhook"],
        "reaches the notebook kernel's own objects",
    ),
}
HOOK = re.compile(
    r"register(_\w+)?_(pre)?hook|register_parametrization|(remove_)?(weight|spectral)_norm"
)
# Notebook rich output: raw HTML / JavaScript a student object would put into the feedback page.
RICH_OUTPUT_METHODS = {
    "_repr_html_",
    "_repr_javascript_",
    "_repr_markdown_",
    "_repr_svg_",
    "_repr_latex_",
    "_repr_json_",
    "_repr_pdf_",
    "_repr_mimebundle_",
    "_ipython_display_",
}
# Library state that honest notebooks change: matplotlib's rcParams.
MUTABLE_LIBRARY_PACKAGES = ("matplotlib",)


def mutating(method: str) -> bool:
    return method in MUTATING_METHODS or (
        method.endswith("_") and not method.startswith("_") and len(method) > 1
    )


def computed_attribute_message() -> str:
    return (
        "`getattr` with a name computed at run time can reach any attribute; write the "
        "attribute out (obj.name) or use getattr(obj, 'name') with the name as a string literal."
    )


def ipython_message(name: str) -> str:
    if name == "get_ipython":
        return (
            "IPython internals are not allowed: magics (%timeit, %%time, ...), shell commands "
            "(!ls) and get_ipython(). Time code with time.perf_counter() instead."
        )
    return (
        f"`{name}` is IPython's input/output history (it holds the test cells); submitted code "
        "may not read it."
    )
