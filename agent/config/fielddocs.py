"""What each config option means, read from the config structs' attribute docstrings.

An option is described by a string literal right below its declaration (the convention Sphinx and
editors read as the attribute's docstring)::

    class BufferConfig(msgspec.Struct, ...):
        max_events: int = 50_000
        \"\"\"Events the buffer holds at most.\"\"\"

``agent schema`` and the component reference (``python -m agent.config.reference``) both take their
descriptions from here, so they cannot disagree with each other or drift from the structs.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from itertools import pairwise

import msgspec


def field_descriptions(cls: type) -> dict[str, str]:
    """Option name -> description for ``cls`` and its bases (the nearest declaration wins)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is msgspec.Struct:
            continue
        found.update(_declared(klass))
    return found


def struct_doc(cls: type) -> str:
    """The struct's own docstring, dedented ('' when it has none of its own)."""
    doc = cls.__dict__.get("__doc__") or ""
    return inspect.cleandoc(doc)


@functools.cache
def _declared(klass: type) -> dict[str, str]:
    """Descriptions of the options declared in ``klass``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # built at run time (msgspec.defstruct) or without source
        return {}
    tree = ast.parse(source)
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef)), [])
    found: dict[str, str] = {}
    for declaration, following in pairwise(body):
        if (isinstance(declaration, ast.AnnAssign) and isinstance(declaration.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            found[declaration.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return found
