"""The JSON event stream is written before SQLite commits the change it describes, and the
row change and its history row commit together: a crash between the two can leave an event
that the database lacks (the restart closes that row), never a committed change without its
event."""

from __future__ import annotations

import io
import json
import sqlite3

from ikecp.engine.settings import Identity
from ikecp.events import PeerBinding
from ikecp.roles.bindings import BindingRegistry


class Witness(io.StringIO):
    """A stream that looks into the database (another connection) at every line."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.db = sqlite3.connect(path)
        self.seen: list[tuple[str, int]] = []

    def write(self, line: str) -> int:
        event = json.loads(line)["event"]
        committed = self.db.execute("SELECT COUNT(*) FROM history").fetchone()[0]
        self.seen.append((event, committed))
        return super().write(line)


def test_event_line_precedes_the_commit(tmp_path) -> None:
    path = str(tmp_path / "b.sqlite")
    BindingRegistry(path).close()  # schema
    stream = Witness(path)
    reg = BindingRegistry(path, stream=stream)
    ev = PeerBinding(peer_id=Identity.fqdn("fap.test"), inner_address="10.0.0.1",
                     public_address="127.0.0.9", public_port=4500, spi_i=b"\x01" * 8,
                     spi_r=b"\x02" * 8, child_spis=())
    reg.update(ev)
    reg.remove(b"\x02" * 8, "test")
    assert stream.seen == [("up", 0), ("down", 1)]
    assert [h[1] for h in reg.history()] == ["up", "down"]
    reg.close()
