"""Fixtures of the operations tests: a throwaway PostgreSQL cluster, and a binding-store
location parametrized over both implementations."""

from __future__ import annotations

import itertools

import pytest
from ikecp.lab import postgres
from ikecp.testing.facility import require

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    """One cluster for the session (initdb costs about a second); removed at the end.
    Fails rather than skips when CI=true and PostgreSQL or psycopg is missing."""
    require(postgres.probe())
    with postgres.cluster() as c:
        yield c
    assert not c.root.exists()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's cluster."""
    return pg_cluster.database(f"t{next(_names)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request, tmp_path) -> str:
    """Where a binding store lives: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "bindings.sqlite")
    return request.getfixturevalue("pg_url")
