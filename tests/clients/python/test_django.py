"""Django 5.2, unmodified, against bkg-db: the built-in apps' migrations and an ORM workload
(nested atomic blocks, select_for_update with skip_locked, bulk_create, many-to-many,
aggregates, a CHECK constraint from a PositiveIntegerField)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

import django  # noqa: E402

from bkg_server import Server  # noqa: E402


@pytest.fixture(scope="module")
def dj():
    srv = Server()
    from django.conf import settings

    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": str(srv.pg_port),
                "NAME": "postgres",
                "USER": "postgres",
                "PASSWORD": srv.password,
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.admin",
            "django.contrib.sessions",
            "django.contrib.messages",
            "djshop",
        ],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="test-only",
    )
    django.setup()
    from django.core.management import call_command

    # The built-in apps' own migrations; the shop's tables as syncdb makes them.
    call_command("migrate", run_syncdb=True, verbosity=0)
    yield srv
    from django.db import connections

    connections.close_all()
    assert srv.stop() == 0


def test_migrations_of_the_built_in_apps(dj):
    from django.contrib.auth.models import Permission, User
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    applied = {(m.app, m.name) for m in MigrationRecorder.Migration.objects.all()}
    assert ("auth", "0012_alter_user_first_name_max_length") in applied
    assert ("admin", "0003_logentry_add_action_flag_choices") in applied
    # The permissions the post-migrate signal bulk-inserts (UNNEST of arrays).
    assert Permission.objects.filter(codename="add_user").exists()
    assert Permission.objects.count() >= 24
    u = User.objects.create_user("ann", password="pw", first_name="A" * 150)
    assert User.objects.get(username="ann").first_name == "A" * 150
    assert u.check_password("pw")
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
        assert c.fetchone()[0] >= 10


def test_orm_workload(dj):
    from django.db import IntegrityError, transaction
    from django.db.models import Count, Sum

    from djshop.models import Customer, Order, Tag

    red, blue = Tag.objects.bulk_create([Tag(name="red"), Tag(name="blue")])
    customers = Customer.objects.bulk_create([Customer(name=f"c{i}", meta={"i": i}) for i in range(20)])
    assert Customer.objects.count() == 20
    with transaction.atomic():
        o = Order.objects.create(customer=customers[0], total=Decimal("10.05"))
        o.tags.add(red, blue)
        try:
            with transaction.atomic():
                Tag.objects.create(name="red")
        except IntegrityError:
            pass
        Order.objects.create(customer=customers[1], total=Decimal("2.50"), status="paid")
    assert Order.objects.count() == 2
    assert Tag.objects.count() == 2
    assert list(Order.objects.filter(tags__name="blue").values_list("total", flat=True)) == [Decimal("10.05")]
    assert Order.objects.aggregate(s=Sum("total"))["s"] == Decimal("12.55")
    assert Customer.objects.filter(meta__i=3).count() == 1
    assert Tag.objects.annotate(n=Count("order")).get(name="red").n == 1
    # PositiveIntegerField is CHECK ("credit" >= 0).
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Customer.objects.filter(pk=customers[2].pk).update(credit=-1)
    # select_for_update(skip_locked=True): a second worker skips the row the first holds.
    started, release = threading.Event(), threading.Event()
    taken = {}

    def worker(name):
        from django.db import connection

        with transaction.atomic():
            row = Order.objects.select_for_update(skip_locked=True).order_by("id").first()
            taken[name] = row.id if row else None
            if name == "first":
                started.set()
                release.wait(10)
        connection.close()

    t = threading.Thread(target=worker, args=("first",))
    t.start()
    assert started.wait(10)
    worker("second")
    release.set()
    t.join()
    assert taken["first"] != taken["second"], taken
    # .iterator() reads through a server-side cursor.
    assert sum(1 for _ in Customer.objects.order_by("id").iterator(chunk_size=7)) == 20
