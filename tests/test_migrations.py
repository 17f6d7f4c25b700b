"""The migrations build exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import billing_app.models  # noqa: F401
from billing_app.db import get_engine


def test_migrated_database_matches_the_models(database_url):
    with get_engine().connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
