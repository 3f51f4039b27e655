"""Dashboard benchmark: one account with 1,000,000 usage records over 90 days.

    .venv/bin/python bench/dashboard.py [--records 1000000] [--days 90] [--runs 9]

Recreates a dedicated PostgreSQL database (``aura_bench_dash`` on 127.0.0.1 by default; set
``BENCH_DATABASE_URL`` to use another), migrates it, seeds the records with ``COPY``, then
reports:

- the time to roll up one day of that traffic (24 hourly rollups and the daily one);
- the time to roll up all of it (the one-off backfill, for reference);
- the median (and min/max) render time of the overview and the 30-day chart page through
  Django's test client, logged in as the account, after one warm-up request each.

Targets (issue 5): a day's rollup < 60 s; each page < 300 ms. Nothing here touches the
database ``DATABASE_URL`` names, and the Redis cache is not used (local memory).
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/aura_bench_dash")

MODELS = [
    ("gpt-4o-mini", "openai", 0.30),
    ("gpt-4o", "openai", 0.15),
    ("claude-haiku-4-5", "anthropic", 0.20),
    ("claude-sonnet-4-5", "anthropic", 0.10),
    ("gemini-2.5-flash", "gemini", 0.20),
    ("mistral-small-latest", "mistral", 0.05),
]
REASONS = [("explicit", 0.55), ("auto:cheapest-capable", 0.40), ("fallback:rate_limited", 0.03), ("fallback:upstream_error", 0.02)]
ERRORS = [(429, "rate_limit_exceeded"), (502, "upstream_error"), (504, "upstream_timeout"), (400, "invalid_request_error")]
COLUMNS = (
    "request_id",
    "created",
    "user_id",
    "api_key_id",
    "endpoint",
    "model_requested",
    "model_used",
    "provider",
    "stream",
    "status",
    "error_class",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "tokens_counted",
    "tokens_original",
    "tokens_sent",
    "ttfb_ms",
    "latency_ms",
    "cost_usd",
    "baseline_cost_usd",
    "savings_compression_usd",
    "savings_cache_usd",
    "savings_provider_cache_usd",
    "savings_routing_usd",
    "cache_status",
    "route_reason",
    "compression",
    "ip",
    "user_agent",
)


def configure() -> None:
    """Point Django at the bench database before it is set up; the rest of the settings are the embedded defaults."""
    os.environ.update(
        {
            "DATABASE_URL": BENCH_URL,
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
            "AURA_ENV_FILE": "/nonexistent/.env",
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "ALLOWED_HOSTS": "testserver",
            "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            "AURA_VAULT_KEYS": "1:YmVuY2gtb25seS12YXVsdC1rZXktMzItYnl0ZXMhISE=",
            "DJANGO_SETTINGS_MODULE": "aura.settings",
        }
    )
    sys.path.insert(0, str(ROOT))


def recreate_database() -> None:
    import psycopg

    base, _sep, name = BENCH_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _pick(rng, weighted):
    return rng.choices([item for item, _w in weighted], weights=[w for _i, w in weighted])[0]


def seed(user, keys, *, records: int, days: int, now: datetime) -> float:
    """COPY ``records`` usage records spread over ``days`` days with a daily rhythm. Returns seconds taken."""
    from django.db import connection

    rng = random.Random(20261127)
    end = now.replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(days * 24, 0, -1)]
    # More traffic in working hours (UTC), less at night, a little more towards the end.
    weights = [(0.35 + (0.65 if 7 <= hour.hour <= 19 else 0.0)) * (0.8 + 0.4 * i / len(hours)) for i, hour in enumerate(hours)]
    scale = records / sum(weights)
    counts = [int(w * scale) for w in weights]
    counts[-1] += records - sum(counts)
    models = [(m, p) for m, p, _w in MODELS]
    model_weights = [w for _m, _p, w in MODELS]
    started = time.perf_counter()
    serial = 0
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY metrics_usagerecord ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for hour, count in zip(hours, counts, strict=True):
                for _ in range(count):
                    serial += 1
                    model, provider = rng.choices(models, weights=model_weights)[0]
                    failed = rng.random() < 0.03
                    status, error_class = rng.choice(ERRORS) if failed else (200, "")
                    hit = not failed and rng.random() < 0.12
                    original = rng.randint(200, 6000)
                    sent = int(original * rng.uniform(0.7, 1.0))
                    prompt = 0 if hit else sent
                    cached = int(prompt * rng.choice((0, 0, 0.5, 0.8)))
                    completion = 0 if failed else rng.randint(20, 800)
                    cost = 0 if hit or failed else (prompt * 0.15 + completion * 0.6) / 1_000_000
                    baseline = 0 if failed else (original * 2.5 + completion * 10) / 1_000_000
                    latency = int(rng.lognormvariate(6.5, 0.7)) if not hit else rng.randint(2, 30)
                    copy.write_row(
                        (
                            f"bench_{serial:09d}",
                            hour + timedelta(seconds=rng.randrange(3600)),
                            user.pk,
                            rng.choice(keys).pk,
                            "chat",
                            model,
                            model,
                            provider,
                            False,
                            status,
                            error_class,
                            prompt,
                            cached,
                            0,
                            completion,
                            0,
                            False,
                            original,
                            sent,
                            latency // 2,
                            latency,
                            round(cost, 8),
                            round(baseline, 8),
                            round((original - sent) * 2.5 / 1_000_000, 8),
                            round(baseline if hit else 0, 8),
                            round(cached * 2.0 / 1_000_000, 8),
                            round(max(baseline - cost, 0) * 0.3, 8) if not hit else 0,
                            "hit" if hit else "miss",
                            _pick(rng, REASONS),
                            "lossless",
                            "203.0.113.7",
                            "bench/1.0",
                        )
                    )
        cursor.execute("ANALYZE metrics_usagerecord")
    return time.perf_counter() - started


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def render_times(client, path: str, runs: int) -> list[float]:
    response = client.get(path)  # warm-up: template loading, first queries
    assert response.status_code == 200, f"{path} answered {response.status_code}"
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=9)
    options = parser.parse_args()

    configure()
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from gateway import services as gateway_services
    from metrics import services
    from metrics.models import DailyRollup, HourlyRollup

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)
    user = User.objects.create_user("bench-dashboard@bench.aura.local", "bench-password-0123", display_name="Bench", email_verified=True)
    keys = [gateway_services.api_key_issue(user=user, name=f"key {n}")[0] for n in range(3)]  # the Free plan's 3
    now = timezone.now()

    seconds = seed(user, keys, records=options.records, days=options.days, now=now)
    print(f"seeded {options.records:,} usage records over {options.days} days in {seconds:.1f} s")

    day = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    one_day = timed(services.rollup_range, start=day, end=day + timedelta(days=1), backfill=True)
    in_day = HourlyRollup.objects.filter(hour__gte=day, hour__lt=day + timedelta(days=1)).count()
    print(f"rollup of one day ({day:%Y-%m-%d}, {in_day} hourly rows): {one_day:.2f} s  (target < 60 s)")

    first = datetime.combine((now - timedelta(days=options.days)).date(), datetime.min.time(), tzinfo=UTC)
    backfill = timed(services.rollup_range, start=first, end=now, backfill=True)
    print(
        f"rollup of all {options.days} days (one-off backfill): {backfill:.1f} s -> "
        f"{HourlyRollup.objects.count():,} hourly and {DailyRollup.objects.count():,} daily rows"
    )

    client = Client()
    client.force_login(user)
    results = {}
    pages = [
        ("overview /dashboard/", "/dashboard/"),
        ("30-day charts /dashboard/charts/?range=30d", "/dashboard/charts/?range=30d"),
        ("90-day charts", "/dashboard/charts/?range=90d"),
        ("7-day charts (hourly)", "/dashboard/charts/?range=7d"),
        ("request log /usage/", "/usage/"),
    ]
    for label, path in pages:
        times = render_times(client, path, options.runs)
        results[label] = times
        print(f"{label:45s} median {statistics.median(times):7.1f} ms   min {min(times):7.1f}   max {max(times):7.1f}")
    target = max(statistics.median(results[label]) for label, _p in pages[:2])
    print(f"overview and 30-day charts: {'within' if target < 300 else 'OVER'} the 300 ms target (worst median {target:.1f} ms)")


if __name__ == "__main__":
    main()
