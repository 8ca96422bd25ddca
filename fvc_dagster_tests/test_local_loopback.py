"""The loopback services' servers come with the dev extra: on a fresh Linux machine, root or
not, `make test` runs the scale-out loopback tests instead of skipping them."""

import sys
from pathlib import Path

import pytest

from fvc_dagster.local.loopback import (
    create_databases,
    free_port,
    missing_requirements,
    postgres,
    postgres_bin,
    redis,
    redis_server,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the server wheels are Linux's")


def test_postgres_and_redis_come_from_the_dev_extra_and_serve_on_loopback(tmp_path: Path):
    import psycopg2
    import redis as redis_client

    assert missing_requirements() is None
    environment = Path(sys.prefix)  # the virtual environment, not the system's packages
    assert postgres_bin().is_relative_to(environment), postgres_bin()
    assert Path(redis_server()).is_relative_to(environment), redis_server()
    pg_port, redis_port = free_port(), free_port()
    with postgres(pg_port), redis(tmp_path, redis_port):
        create_databases(pg_port, "probe")
        connection = psycopg2.connect(host="127.0.0.1", port=pg_port, user="postgres",
                                      dbname="probe")  # fmt: skip
        try:
            assert connection.server_version > 0
        finally:
            connection.close()
        assert redis_client.Redis(host="127.0.0.1", port=redis_port).ping()
