"""The data folder and everything written in it
are the owner's only, from the first byte, whoever creates them; ensure_admin prints the
password once; `make` keeps the key in SKILLAUDIT_DATA_DIR.

The commands run in subprocesses with umask 022 (what a login shell has), as `make run`,
cron or a shell would start them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
# Writes a run, then prints the mode of every file in the data folder while the SQLite
# connection is still open (so -wal and -shm exist).
WRITE_AND_LIST = """
import os, stat
from django.conf import settings
from django.utils import timezone
from runs.models import SkillRun
SkillRun.objects.create(id="r1", skill_id="s", status="ok", started_at=timezone.now())
for name in sorted(os.listdir(settings.DATA_DIR)):
    path = settings.DATA_DIR / name
    print(name, oct(stat.S_IMODE(path.stat().st_mode)))
"""


def run(args, data_dir: Path, **env):
    environment = {
        **os.environ,
        "SKILLAUDIT_DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "SECRET_KEY": "file-modes-test-key-0123456789-0123456789",
        "DJANGO_SETTINGS_MODULE": "skillaudit_site.settings",
        **env,
    }
    environment.pop("DJANGO_SUPERUSER_PASSWORD", None)
    return subprocess.run(
        args,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_commands_create_the_data_folder_0700_and_its_files_0600(tmp_path):
    data_dir = tmp_path / "new" / "data"
    manage = [sys.executable, "manage.py"]
    run(manage + ["migrate", "--noinput", "-v0"], data_dir)
    run(manage + ["ensure_admin"], data_dir)
    listed = run(manage + ["shell", "--no-imports", "-c", WRITE_AND_LIST], data_dir).stdout
    modes = dict(line.split() for line in listed.splitlines() if " 0o" in line)
    assert mode(data_dir) == 0o700
    for name in ("skillaudit.sqlite3", "skillaudit.sqlite3-wal", "skillaudit.sqlite3-shm"):
        assert modes[name] == "0o600", (name, modes)
    assert modes["admin_password"] == "0o600"
    run(manage + ["collectstatic", "--noinput", "-v0"], data_dir)
    for path in data_dir.rglob("*"):
        assert mode(path) & 0o077 == 0, path


def test_an_open_data_folder_left_by_an_older_version_is_closed(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    run([sys.executable, "manage.py", "check"], data_dir)
    assert mode(data_dir) == 0o700


def test_make_keeps_the_key_in_the_data_folder_0600(tmp_path):
    data_dir = tmp_path / "elsewhere"
    subprocess.run(
        ["make", "-s", "key"],
        cwd=ROOT,
        env={**os.environ, "SKILLAUDIT_DATA_DIR": str(data_dir)},
        check=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )
    key = data_dir / "secret_key"
    assert len(key.read_text().strip()) >= 50
    assert mode(key) == 0o600 and mode(data_dir) == 0o700
    assert not (data_dir / "secret_key.tmp").exists()


def test_gunicorn_sets_the_same_umask():
    config = (ROOT / "skillaudit_site" / "gunicorn.conf.py").read_text()
    namespace: dict = {}
    previous = os.umask(0o022)
    try:
        exec(compile(config, "gunicorn.conf.py", "exec"), namespace)
        assert namespace["umask"] == 0o077
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(previous)


@pytest.mark.django_db
def test_ensure_admin_prints_the_password_only_when_it_makes_it(settings, tmp_path, capsys):
    settings.DATA_DIR = tmp_path
    os.environ.pop("DJANGO_SUPERUSER_PASSWORD", None)
    call_command("ensure_admin", username="boss")
    first = capsys.readouterr().out
    password = (tmp_path / "admin_password").read_text().strip()
    assert password in first
    assert mode(tmp_path / "admin_password") == 0o600
    call_command("ensure_admin", username="boss")
    again = capsys.readouterr().out
    assert password not in again and "admin_password" in again
