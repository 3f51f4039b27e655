"""Seed many bench tenants in AURA's database at once, for bench/gateway.py.

    DJANGO_SETTINGS_MODULE=aura.settings python bench/seed_tenants.py < spec.json > keys.json

AURA enforces each account's plan (requests per minute and per month), so a benchmark that sent
hundreds of calls a second from one account would measure 429s. The bench therefore spreads its
load over many accounts, the way a multi-tenant gateway sees it: each connection (and each stream)
uses its own account's key. This creates them in one process, which the ``manage.py aura``
commands, at about a second each, cannot do quickly enough for a hundred accounts.

The spec is ``{"run_id": "...", "upstream_key": "...", "groups": {"fast": {"base_url": "...",
"count": 50}, ...}}``. Each account gets an active ``team`` subscription (the largest plan, so its
limits do not trip), an OpenAI key pointing at the group's upstream (through the vault, as the
CLI stores it) and one AURA key. Passwords are unusable: nobody logs in as a bench tenant. The
output is ``{"<group>": ["<AURA key>", ...]}``; it holds keys, so the caller keeps it in memory only.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura.settings")
    import django

    django.setup()
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import User
    from billing.models import Subscription
    from gateway import services

    spec = json.load(sys.stdin)
    keys: dict[str, list[str]] = {}
    for group, options in spec["groups"].items():
        keys[group] = []
        for index in range(options["count"]):
            with transaction.atomic():
                email = f"bench-{group}-{index}-{spec['run_id']}@bench.aura.local"
                user = User.objects.create_user(email, None, display_name=f"Bench {group} {index}", email_verified=True)
                Subscription.objects.create(
                    user=user,
                    paddle_subscription_id=f"bench-{spec['run_id']}-{group}-{index}",
                    status="active",
                    plan="team",
                    state_at=timezone.now(),
                )
                services.provider_key_save(user=user, provider="openai", api_key=spec["upstream_key"], base_url=options["base_url"])
                _key, secret = services.api_key_issue(user=user, name=f"bench {spec['run_id']}")
            keys[group].append(secret)
    json.dump(keys, sys.stdout)


if __name__ == "__main__":
    main()
