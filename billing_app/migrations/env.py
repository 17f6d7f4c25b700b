from alembic import context
from sqlmodel import SQLModel

import billing_app.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from billing_app.db import build_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = build_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
