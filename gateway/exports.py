"""The gateway's part of a GDPR export: keys described, never revealed."""

from accounts.exports import as_json

from .models import ApiKey


def collect(user) -> dict:
    # "id": what usage_records.csv and usage_daily.csv name a key by (api_key_id).
    api_keys = list(user.api_keys.values("id", "name", "prefix", "created", "last_used", "revoked", *ApiKey.SETTINGS))
    provider_keys = [
        {
            "provider": k.provider,
            "label": k.label,
            "last4": k.last4,
            "base_url": k.base_url,
            "check": k.check_status,
            "created": k.created,
            "updated": k.updated,
        }
        for k in user.provider_keys.all()
    ]
    return {
        "api_keys.json": ("your AURA keys: names, prefixes, dates and settings (the keys themselves are never stored)", as_json(api_keys)),
        "provider_keys.json": ("your provider keys: provider, label, last 4 characters (never the key)", as_json(provider_keys)),
    }
