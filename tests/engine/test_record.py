"""``record`` keeps every dataclass behaviour while replacing the constructor."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from ikecp.engine.sa import Datagram
from ikecp.events import SaFailed
from ikecp.record import record


@record
class _Point:
    x: int
    y: int = 7


def test_fields_defaults_and_keywords() -> None:
    assert (_Point(1).x, _Point(1).y) == (1, 7)
    assert _Point(y=2, x=3) == _Point(3, 2)
    assert SaFailed("r") == SaFailed(reason="r", notify_type=None)
    with pytest.raises(TypeError):
        _Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Point(1, 2, 3)  # type: ignore[call-arg]


def test_frozen_hashable_replace_pickle() -> None:
    d = Datagram(b"ike", 4500, ("192.0.2.1", 4500), True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.data = b""  # type: ignore[misc]
    assert hash(d) == hash(Datagram(b"ike", 4500, ("192.0.2.1", 4500), True))
    assert dataclasses.replace(d, local_port=500).local_port == 500
    assert pickle.loads(pickle.dumps(d)) == d
    assert not hasattr(d, "__dict__")


def test_default_factory_keeps_dataclass_init() -> None:
    @record
    class WithFactory:
        items: list = dataclasses.field(default_factory=list)

    a, b = WithFactory(), WithFactory()
    assert a.items == [] and a.items is not b.items
