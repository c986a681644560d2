"""The store on PostgreSQL: a throwaway cluster (or $RLHF_TEST_POSTGRES_URL), row locks with
SKIP LOCKED under 20 concurrent labelers, the append-only trigger, and a v1 upgrade."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, text

from alignment.errors import UserError
from tests.ui.conftest import pair_rows
from tests.ui.live import free_port
from ui import migrations
from ui.service import LabelService

pytest.importorskip("psycopg2")


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else None)


@pytest.fixture(scope="module")
def pg_server():
    if os.environ.get("RLHF_TEST_POSTGRES_URL"):
        yield os.environ["RLHF_TEST_POSTGRES_URL"].rsplit("/", 1)[0]
        return
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = tempfile.mkdtemp(prefix="rlhf-pg-")
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    data = os.path.join(root, "data")
    try:
        subprocess.run(as_user + [initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True)
        subprocess.run(as_user + [pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "start", "-o",
                                  f"-p {port} -k {root} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start a throwaway PostgreSQL: {err}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server, request):
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    admin = create_engine(f"{pg_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{pg_server}/{name}"


def test_twenty_concurrent_labelers_on_postgres(pg_url):
    svc = LabelService.open(pg_url)
    cid = svc.create_campaign("c", items=pair_rows(12, k=2), overlap=3)
    users = [svc.create_user(f"u{i}", None, simulated=True) for i in range(20)]
    got: dict[int, list[int]] = {u: [] for u in users}
    errors: list[Exception] = []
    barrier = threading.Barrier(len(users))

    def work(u):
        barrier.wait()
        try:
            while (a := svc.next_assignment(u, cid)) is not None:
                j = svc.submit_judgment(a.id, u, choice="A", client_token=a.token)
                assert svc.submit_judgment(a.id, u, choice="A", client_token=a.token) == j
                got[u].append(a.item_id)
        except Exception as err:  # pragma: no cover - asserted below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert all(len(v) == len(set(v)) for v in got.values())
    per_item = Counter(i for v in got.values() for i in v)
    assert len(per_item) == 12 and set(per_item.values()) == {3}
    assert svc.progress(cid)["judgments"] == 36
    with pytest.raises(Exception, match="append-only"):
        with svc.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))
    svc.close()


def test_v1_postgres_database_is_upgraded(pg_url):
    engine = create_engine(pg_url)
    migrations.migrate(engine, target=1)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (name, role, simulated, created_at) VALUES ('old', 'labeler', true, 0)"))
    engine.dispose()
    svc = LabelService.open(pg_url)
    assert svc.get_user_by_name("old").active
    with svc.engine.connect() as conn:
        assert conn.execute(text("SELECT max(version) FROM schema_version")).scalar() == migrations.LATEST
    svc.close()


def test_unreachable_postgres_is_a_user_error():
    with pytest.raises(UserError, match="cannot open label store"):
        LabelService.open(f"postgresql+psycopg2://nobody:secret@127.0.0.1:{free_port()}/none")
