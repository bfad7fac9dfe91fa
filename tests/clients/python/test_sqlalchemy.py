"""SQLAlchemy 2 (psycopg 3 dialect) and Alembic operations against bkg-db, unmodified: a
migration that creates tables, adds a column with a foreign key, a CHECK constraint, changes a
varchar's length and drops a constraint; then ORM work with nested transactions (savepoints),
with_for_update(skip_locked=True) with a LIMIT, and yield_per over a server-side cursor."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bkg_server import Server


@pytest.fixture(scope="module")
def engine():
    srv = Server()
    eng = sa.create_engine(
        f"postgresql+psycopg://postgres:{srv.password}@127.0.0.1:{srv.pg_port}/postgres", future=True
    )
    yield eng
    eng.dispose()
    assert srv.stop() == 0


def test_alembic_operations(engine):
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        op.create_table(
            "account",
            sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
            sa.Column("balance", sa.Numeric(10, 2), server_default="0", nullable=False),
        )
        op.create_table(
            "invoice",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("amount", sa.Numeric(10, 2), nullable=False),
            sa.Column("status", sa.String(20), nullable=False, server_default="open"),
        )
        op.add_column("invoice", sa.Column("account_id", sa.Integer, nullable=True))
        op.create_foreign_key("fk_invoice_account", "invoice", "account", ["account_id"], ["id"])
        op.create_check_constraint("ck_invoice_amount", "invoice", "amount >= 0")
        op.alter_column("invoice", "status", type_=sa.String(40), existing_type=sa.String(20))
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO account (name) VALUES ('ann')"))
        with pytest.raises(sa.exc.IntegrityError):
            with conn.begin_nested():
                conn.execute(sa.text("INSERT INTO invoice VALUES (1, -5, 'open', 1)"))
        with pytest.raises(sa.exc.IntegrityError):
            with conn.begin_nested():
                conn.execute(sa.text("INSERT INTO invoice VALUES (1, 5, 'open', 99)"))
        conn.execute(sa.text("INSERT INTO invoice VALUES (1, 5, :s, 1)"), {"s": "x" * 40})
    with engine.begin() as conn:
        op = Operations(MigrationContext.configure(conn))
        op.drop_constraint("ck_invoice_amount", "invoice", type_="check")
        conn.execute(sa.text("INSERT INTO invoice VALUES (2, -1, 'refund', 1)"))
        assert conn.execute(sa.text("SELECT sum(amount) FROM invoice")).scalar_one() == Decimal("4.00")


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "sa_job"
    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(10), default="new")


def test_orm_savepoints_row_locks_and_streaming(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        s.add_all([Job(id=i) for i in range(1, 501)])
    with Session(engine) as s:
        with s.begin():
            s.add(Job(id=1000))
            try:
                with s.begin_nested():
                    s.add(Job(id=1))
                    s.flush()
            except sa.exc.IntegrityError:
                pass
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 501
    # Two workers: the second skips the row the first locked (LIMIT bound as a parameter).
    with Session(engine) as a, Session(engine) as b:
        take = sa.select(Job).where(Job.state == "new").order_by(Job.id).limit(1).with_for_update(skip_locked=True)
        with a.begin(), b.begin():
            ja = a.scalars(take).one()
            jb = b.scalars(take).one()
            assert (ja.id, jb.id) == (1, 2)
    with Session(engine) as s:
        ids = [j.id for j in s.scalars(sa.select(Job).order_by(Job.id).execution_options(yield_per=100))]
        assert len(ids) == 501 and ids[0] == 1 and ids[-1] == 1000
