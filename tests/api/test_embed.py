"""``examples/embed.py`` (the README's "Embedding" example) runs as a test: a SeGW and a FAP
in one asyncio program on loopback, a custom CP provider answering through a ``Deferred``,
callbacks; the assertions are on what the callbacks saw."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "embed.py"


def load_example():
    spec = importlib.util.spec_from_file_location("embed_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_embedding_example_sees_what_it_should(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    example = load_example()
    seen = asyncio.run(example.main())
    host, port = seen.fap_local.rsplit(":", 1)
    # The FAP learned its own loopback address and IKE port as its public address: no NAT.
    assert [(u.address, u.port, u.previous, u.pushed) for u in seen.public] == [
        (host, int(port), None, False)]
    assert host == "127.0.0.1"
    # The custom provider's value arrived (after its asynchronous lookup).
    assert seen.site == example.SITES["fap-1.example"]
    up, down = seen.bindings
    assert (up.kind, up.identity, up.public_ip, up.public_port) == (
        "up", "fap-1.example", "127.0.0.1", int(port))
    assert up.inner_ip is not None and up.inner_ip.startswith("10.7.0.")
    assert (down.kind, down.identity, down.spi_r, down.reason) == (
        "down", "fap-1.example", up.spi_r, "deleted by peer")
    assert seen.failures == []
    assert os.listdir(tmp_path) == []  # nothing written: the bindings were in memory


def test_the_example_runs_as_a_program(tmp_path) -> None:
    out = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "FAP got the site name: 'building 4, floor 2'" in out
    assert "binding up: fap-1.example" in out and "(deleted by peer)" in out
    assert os.listdir(tmp_path) == []


def test_the_readme_embedding_program_prints_what_the_readme_shows(tmp_path) -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    section = readme[readme.index("## Embedding"):]
    program = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"\(`tests/api/test_embed.py` runs it\)\n\n```\n(.*?)```", section, re.S)
    assert program is not None and shown is not None
    (tmp_path / "embed.py").write_text(program.group(1))
    out = subprocess.run([sys.executable, "embed.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True).stdout

    def shape(text: str) -> list[str]:  # ports and SPIs differ from run to run
        text = re.sub(r"(port=|127\.0\.0\.1:)\d+", r"\1P", text)
        return re.sub(r"spi_r='[0-9a-f]{16}'", "spi_r=S", text).splitlines()

    assert shape(out) == shape(shown.group(1))
    assert os.listdir(tmp_path) == ["embed.py"]
