"""Settings are read in a fresh interpreter, the way a server starts."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; from django.conf import settings; django.setup(); print(json.dumps({k: str(getattr(settings, k)) for k in %r}))"
)
DEPLOY_CHECK = (
    "import django; from django.core.management import call_command; django.setup(); "
    "call_command('check', '--deploy', '--fail-level', 'WARNING')"
)


def start(env: dict, *names: str, command=None):
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "aura.settings",
        "AURA_DATA_DIR": env.pop("AURA_DATA_DIR", ""),
        "AURA_ENV_FILE": "/nonexistent/.env",  # a developer's local .env must not leak in
    }
    code = command or PROBE % (list(names),)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_no_environment_means_the_embedded_defaults(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path)}, "DATABASES", "CACHES", "EMAIL_BACKEND", "CELERY_TASK_ALWAYS_EAGER", "DEBUG")
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout
    assert "LocMemCache" in result.stdout
    assert "console.EmailBackend" in result.stdout
    assert '"CELERY_TASK_ALWAYS_EAGER": "True"' in result.stdout
    assert '"DEBUG": "False"' in result.stdout
    # The generated secret is kept private on disk.
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"


def test_service_urls_switch_to_postgres_and_redis(tmp_path):
    env = {
        "AURA_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://root@127.0.0.1:5432/aura",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "SECRET_KEY": "x" * 60,
        "AURA_VAULT_KEYS": "1:dGVzdC1vbmx5LXZhdWx0LWtleS0zMi1ieXRlcy0hISE=",
        "EMAIL_URL": "smtp://127.0.0.1:2525",
    }
    result = start(env, "DATABASES", "CACHES", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "EMAIL_PORT")
    assert result.returncode == 0, result.stderr
    assert "django.db.backends.postgresql" in result.stdout
    assert "RedisCache" in result.stdout
    assert '"CELERY_BROKER_URL": "redis://127.0.0.1:6379/3"' in result.stdout
    assert '"CELERY_TASK_ALWAYS_EAGER": "False"' in result.stdout
    assert '"EMAIL_PORT": "2525"' in result.stdout


def test_a_bad_boolean_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "DEBUG": "maybe"}, "DEBUG")
    assert result.returncode != 0
    assert "DEBUG must be true or false, not 'maybe'" in result.stderr


def test_a_bad_integer_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "SECURE_HSTS_SECONDS": "a year"}, "DEBUG")
    assert "SECURE_HSTS_SECONDS must be an integer" in result.stderr


def test_a_spin_longer_than_ten_milliseconds_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "AURA_REDIS_SPIN_MICROSECONDS": "50000"}, "DEBUG")
    assert "AURA_REDIS_SPIN_MICROSECONDS must be at most 10000, not 50000" in result.stderr
    result = start({"AURA_DATA_DIR": str(tmp_path), "AURA_REDIS_SPIN_MICROSECONDS": "0"}, "AURA_REDIS_SPIN_MICROSECONDS")
    assert result.returncode == 0 and '"0"' in result.stdout


def test_a_bad_redis_url_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "REDIS_URL": "localhost:6379"}, "DEBUG")
    assert "REDIS_URL must be redis://, rediss://, unix://" in result.stderr


def test_a_bad_database_url_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "DATABASE_URL": "nonsense", "SECRET_KEY": "x" * 60}, "DEBUG")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_a_short_secret_key_fails_in_production(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "SECRET_KEY": "short"}, "DEBUG")
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_a_shared_database_needs_a_shared_secret_key(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://root@127.0.0.1/aura"}, "DEBUG")
    assert "SECRET_KEY must be set when DATABASE_URL is set" in result.stderr


def test_a_shared_database_needs_shared_vault_keys(tmp_path):
    env = {"AURA_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://root@127.0.0.1/aura", "SECRET_KEY": "x" * 60}
    result = start(env, "DEBUG")
    assert "AURA_VAULT_KEYS must be set when DATABASE_URL is set" in result.stderr


def test_bad_vault_keys_fail_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "AURA_VAULT_KEYS": "1:c2hvcnQ="}, "DEBUG")
    assert "AURA_VAULT_KEYS entries must be" in result.stderr


def test_a_bad_paddle_environment_fails_loudly(tmp_path):
    result = start({"AURA_DATA_DIR": str(tmp_path), "PADDLE_ENVIRONMENT": "live"}, "DEBUG")
    assert "PADDLE_ENVIRONMENT must be one of sandbox, production" in result.stderr


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {
        "AURA_DATA_DIR": str(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": "k3Jd8-2mQz!fPq0xV7sLwT4nR9yB6cH1uE5aG2iO8pZ3dN7jM0qW4eRtY6uI",
        "ALLOWED_HOSTS": "aura.example.com",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
    }
    result = start(
        env,
        command=DEPLOY_CHECK,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr


def test_env_example_lists_every_setting():
    import re

    read = set(re.findall(r'env(?:_bool|_int|_choice|_url|\.str|\.list)\(\s*"([A-Z_]+)"', (ROOT / "aura/settings.py").read_text()))
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read == listed


def test_a_web_process_sets_its_garbage_collector_for_bursts(tmp_path):
    """What start-up made is frozen, and young objects are collected in larger batches (see aura/wsgi.py)."""
    probe = "import gc, aura.wsgi; print(gc.get_threshold(), gc.get_freeze_count() > 10_000)"
    result = start({"AURA_DATA_DIR": str(tmp_path)}, command=probe)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "(20000, 20, 20) True"
