"""The GDPR export's contents. Each app that holds personal data contributes files from its own ``exports.py``."""

import csv
import io
import json
from decimal import Decimal
from importlib import import_module

from django.apps import apps

from aura.spreadsheets import text_cell

README = """AURA data export
================

This archive holds the personal data AURA keeps about your account, as of
{generated} (UTC). It never contains the content of prompts or answers (AURA
does not store them) or any secret: AURA keys appear by name and prefix only,
provider keys by provider, label and last 4 characters only.

Files
-----
{files}

Formats: JSON files are UTF-8 JSON; CSV files are UTF-8 with a header row.
Questions: {privacy_email}
"""


def _plain(value):
    """Money as people read it (0.00000000, not str()'s 0E-8), a mapping or list as JSON (not Python's
    repr), anything else as str() gives it."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _cell(value):
    return text_cell(_plain(value))


def as_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=lambda value: str(_plain(value)))


def as_csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return out.getvalue()


def collect(user) -> dict:
    """This app's part: (name -> (description, content))."""
    events = list(user.login_events.values("created", "succeeded", "ip", "browser", "os"))
    browsers = list(user.browser_sessions.values("created", "last_seen", "ip", "device"))
    return {
        "profile.json": (
            "your profile: email, display name, language, theme, dates",
            as_json(
                {
                    "id": user.pk,
                    "email": user.email,
                    "display_name": user.display_name,
                    "email_verified": user.email_verified,
                    "language": user.language,
                    "theme": user.theme,
                    "created": user.created,
                    "last_login": user.last_login,
                }
            ),
        ),
        "privacy_choices.json": (
            "your restriction and objection choices, with the time each was set, and any pending deletion",
            as_json(
                {
                    "processing_restricted_since": user.restricted_at,
                    "analytics_objected_since": user.objected_at,
                    "deletion_requested_at": user.deletion_requested_at,
                }
            ),
        ),
        "login_history.csv": (
            "every login attempt kept (14 days): time, result, IP, browser, OS",
            as_csv(events, ["created", "succeeded", "ip", "browser", "os"]),
        ),
        "signed_in_browsers.csv": (
            "each browser signed in to your account: when it signed in, when it was last seen, its IP and device",
            as_csv(browsers, ["created", "last_seen", "ip", "device"]),
        ),
    }


def collect_all(user) -> dict[str, str]:
    from django.conf import settings
    from django.utils import timezone

    files: dict[str, tuple[str, str]] = {}
    for config in apps.get_app_configs():
        try:
            module = import_module(f"{config.name}.exports")
        except ModuleNotFoundError as error:
            if error.name != f"{config.name}.exports":
                raise
            continue
        files.update(module.collect(user))
    listing = "\n".join(f"- {name}: {description}" for name, (description, _) in sorted(files.items()))
    readme = README.format(generated=timezone.now().strftime("%Y-%m-%d %H:%M"), files=listing, privacy_email=settings.PRIVACY_EMAIL)
    return {"README.txt": readme, **{name: content for name, (_, content) in files.items()}}
