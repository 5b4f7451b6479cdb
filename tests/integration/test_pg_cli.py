"""The CLI with a PostgreSQL outbox, against the real test cluster: check-config logs in (and
says why it cannot), backup hands over to pg_dump; the password shows nowhere."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tillhook import cli
from tillhook.store.pg.connect import PostgresTarget


def write(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "tillhook.toml"
    path.write_text(f"[storage]\n{storage}\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def url_with(pg_url: str, *, password: str | None = None, port: int | None = None, database: str | None = None) -> str:
    parts = urlsplit(pg_url)
    netloc = f"{parts.username}:{password or parts.password}@{parts.hostname}:{port or parts.port}"
    return parts._replace(netloc=netloc, path=f"/{database}" if database else parts.path).geturl()


def test_check_config_logs_in_and_says_ok(
    tmp_path: Path, pg_url: str, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'url = "{pg_url}"')
    code, out, err = run(capsys, "check-config", str(path))
    assert (code, err) == (0, "")
    assert out == f"{path}: ok (0 endpoint(s), PostgreSQL {pg_target.display})\n"
    assert pg_target.password and pg_target.password not in out


def test_check_config_takes_the_password_from_the_password_file(
    tmp_path: Path, pg_url: str, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pg_target.password
    secret = tmp_path / "pgpassword"
    secret.write_text(pg_target.password + "\n")
    path = write(tmp_path, f'url = "{pg_target.dsn}"\npassword_file = "{secret}"')
    code, out, err = run(capsys, "check-config", str(path))
    assert (code, err) == (0, "") and "ok" in out


def test_check_config_takes_the_password_from_pgpassword(
    tmp_path: Path, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_target.password
    monkeypatch.setenv("PGPASSWORD", pg_target.password)
    code, out, err = run(capsys, "check-config", str(write(tmp_path, f'url = "{pg_target.dsn}"')))
    assert (code, err) == (0, "") and "ok" in out


def test_check_config_with_a_wrong_password_exits_1_without_it(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'url = "{url_with(pg_url, password="Wr0ng-pa55")}"')
    code, out, err = run(capsys, "check-config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(
        f"tillhook: {path} is valid, but its PostgreSQL cannot be used: PostgreSQL refused the login:"
    )
    assert 'password authentication failed for user "tillhook"' in err
    assert "Wr0ng-pa55" not in err


def test_check_config_with_a_refused_port_exits_1(
    tmp_path: Path, pg_url: str, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check-config", str(write(tmp_path, f'url = "{url_with(pg_url, port=closed_port)}"')))
    assert (code, out) == (1, "")
    assert f"PostgreSQL at 127.0.0.1:{closed_port} refused the connection: is PostgreSQL running" in err


def test_check_config_with_a_missing_database_exits_1(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f'url = "{url_with(pg_url, database="tillhook_not_there")}"')
    code, out, err = run(capsys, "check-config", str(path))
    assert (code, out) == (1, "")
    assert 'has no such database: database "tillhook_not_there" does not exist' in err


@pytest.mark.parametrize(
    "url",
    ["mysql://tillhook:Wr0ng-pa55@127.0.0.1/x", "postgresql://tillhook:Wr0ng-pa55@127.0.0.1:0/x"],
)
def test_check_config_with_a_bad_url_exits_2_without_quoting_it(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check-config", str(write(tmp_path, f'url = "{url}"')))
    assert (code, out) == (2, "")
    assert "  storage.url: " in err and "Wr0ng-pa55" not in err


def test_backup_of_a_postgresql_outbox_gives_the_pg_dump_command(
    tmp_path: Path, pg_url: str, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, f'url = "{pg_url}"')
    code, out, err = run(capsys, "backup", "BACKUP.dump", "--config", str(config))
    assert (code, out) == (2, "")
    command = f"pg_dump --format=custom --file=BACKUP.dump '{pg_target.dsn}'"
    assert err.splitlines()[1] == f"  {command}"
    assert "$PGPASSWORD or ~/.pgpass" in err
    assert pg_target.password and pg_target.password not in err
    assert not (tmp_path / "BACKUP.dump").exists() and not Path("BACKUP.dump").exists()

    # The command works as printed, given the password as it says.
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is not installed (Debian's postgresql-client comes with the postgresql package)"
    done = subprocess.run(
        shlex.split(command), cwd=tmp_path, env={"PGPASSWORD": pg_target.password}, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "BACKUP.dump").read_bytes().startswith(b"PGDMP")


def test_backup_names_the_password_file_when_the_config_has_one(
    tmp_path: Path, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pg password"
    secret.write_text("unused\n")
    config = write(tmp_path, f'url = "{pg_target.dsn}"\npassword_file = "{secret}"')
    code, _, err = run(capsys, "backup", "out.dump", "--config", str(config))
    assert code == 2
    assert f"PGPASSWORD=\"$(cat '{secret}')\" pg_dump --format=custom --file=out.dump '{pg_target.dsn}'" in err
    assert "unused" not in err


async def test_tokens_are_read_from_the_shared_outbox(
    tmp_path: Path, pg_url: str, pg_target: PostgresTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    from tillhook.store.pg.outbox import PostgresStore

    path = write(tmp_path, f'url = "{pg_url}"')
    # Nothing made there yet: said, naming the key and the database without its password.
    code, out, err = await asyncio.to_thread(run, capsys, "tokens", "--config", str(path))
    assert code == 2 and out == ""
    assert f"there is no tillhook database at {pg_target.display} (storage.url of {path})" in err
    assert pg_target.password and pg_target.password not in err
    store = PostgresStore(pg_target)
    await store.open()
    try:
        made = await store.tokens(None, None, None)
    finally:
        await store.close()
    code, out, err = await asyncio.to_thread(run, capsys, "tokens", "--config", str(path))
    assert (code, err) == (0, "")
    assert made.ingest in out and made.admin in out and made.viewer in out
