"""``record``: a frozen, slotted dataclass whose constructor is cheap.

Payloads, events and datagrams are built several times per message. A frozen dataclass's generated
``__init__`` stores every field through ``object.__setattr__`` (to get past the frozen
``__setattr__``), which costs several times more than the object itself; storing through
each slot's own descriptor skips that lookup and keeps the class as frozen as before.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # it only informs type checkers, which read the branch above
    def dataclass_transform(**_: Any) -> Callable[[T], T]:
        return lambda f: f


@dataclass_transform(frozen_default=True)
def record(cls: T) -> T:
    """``@dataclass(frozen=True, slots=True)`` with an ``__init__`` that sets slots directly.

    Fields may have plain defaults; a class needing ``default_factory`` or ``__post_init__``
    keeps the dataclass constructor.
    """
    cls = typing.cast(T, dataclasses.dataclass(frozen=True, slots=True)(cls))
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(
            f.default_factory is not dataclasses.MISSING or not f.init for f in fields):
        return cls
    env: dict[str, object] = {}
    params, body = [], []
    for i, f in enumerate(fields):
        env[f"_set{i}"] = getattr(cls, f.name).__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            env[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})\n")
    source = "def __init__(self, " + ", ".join(params) + "):\n" + ("".join(body) or "    pass\n")
    exec(source, env)  # the source holds only the class's own field names
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    # Says "this __init__ only stores these fields, in this order, through their descriptors":
    # the native codec then does the same stores without the Python frame (any class whose
    # construction does more, e.g. a __post_init__ check, lacks it and is called instead).
    init.__record_fields__ = tuple(f.name for f in fields)  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return cls
