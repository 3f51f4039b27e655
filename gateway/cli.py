"""The gateway's ``python manage.py aura <command>`` entries (see accounts/management/commands/aura.py)."""

from django.conf import settings
from django.core.management.base import CommandError

from accounts.models import User

from . import services
from .forms import ProviderKeyForm
from .mock_provider import add_arguments as _mock_provider_args
from .mock_provider import serve as _mock_provider
from .models import ProviderKey
from .providers import PROVIDERS


def _user(email: str) -> User:
    user = User.objects.filter(email=User.objects.normalize_email(email)).first()
    if user is None:
        raise CommandError(f"no user with email {email}")
    return user


def _key_issue_args(parser):
    parser.add_argument("--email", required=True)
    parser.add_argument("--name", default="CLI key")


def _key_issue(options, out):
    try:
        _key, secret = services.api_key_issue(user=_user(options["email"]), name=options["name"][:80])
    except services.KeyLimitReached as error:
        raise CommandError(str(error)) from None
    out.write(secret)


def _provider_add_args(parser):
    parser.add_argument("--email", required=True, help="the account's email")
    parser.add_argument("--provider", required=True, choices=sorted(PROVIDERS), help="custom: any OpenAI-compatible server")
    parser.add_argument(
        "--api-key", required=True, help="the provider's key (stored encrypted; replaces one with the same provider and label)"
    )
    parser.add_argument("--base-url", default="", help="a custom server's /v1 URL, or a provider's regional endpoint")
    parser.add_argument(
        "--label",
        default="",
        help="letters, digits, - and _: calls name this key as label/model (a custom server needs one)",
    )


def _provider_add(options, out):
    user = _user(options["email"])
    # The cabinet's own form: what it refuses, the command line refuses too, with the same reasons.
    form = ProviderKeyForm({name: options[name] for name in ("provider", "api_key", "base_url", "label")})
    if not form.is_valid():
        reasons = [f"--{name.replace('_', '-')}: {message}" for name, messages in form.errors.items() for message in messages]
        raise CommandError(" ".join(reasons))
    data = form.cleaned_data
    existing = ProviderKey.objects.filter(user=user, provider=data["provider"], label=data["label"]).first()
    try:
        key = services.provider_key_save(
            user=user,
            provider=data["provider"],
            api_key=data["api_key"],
            base_url=data["base_url"],
            label=data["label"],
            instance=existing,
        )
    except services.ProviderKeyError as error:
        raise CommandError(str(error)) from None
    status = services.provider_key_check(key=key)
    verb = "replaced" if existing else "added"
    out.write(f"{verb} {key.provider} key {key.masked} ({services.CHECK_MESSAGES[status]})")
    _note_process_cache(out)


def _note_process_cache(out) -> None:
    """Without Redis each process caches in its own memory: this command cannot clear a running
    server's copy, so say when the server will see the change (the cabinet's changes show at once)."""
    if "locmem" in settings.CACHES["default"]["BACKEND"]:
        out.write(
            f"note: without REDIS_URL a running AURA server sees this within {settings.AURA_AUTH_CACHE_SECONDS // 60 or 1} "
            "minute(s), or at once when restarted"
        )


DEMO_EMAIL = "demo@aura.local"
DEMO_PASSWORD = "aura-demo-password"
DEMO_KEY_NAME = "demo"


def _demo_setup_args(parser):
    parser.add_argument("--mock-url", default="http://127.0.0.1:8900", help="where the mock provider listens")


def _demo_setup(options, out):
    """The local demo: an account wired to the mock provider and a fresh AURA key. Safe to re-run."""
    from accounts.services import user_create

    user = User.objects.filter(email=DEMO_EMAIL).first() or user_create(
        email=DEMO_EMAIL, password=DEMO_PASSWORD, display_name="Demo", verified=True
    )
    mock = options["mock_url"].rstrip("/")
    for provider, base_url in (("openai", f"{mock}/v1"), ("anthropic", mock), ("gemini", mock)):
        existing = ProviderKey.objects.filter(user=user, provider=provider, label="").first()
        services.provider_key_save(user=user, provider=provider, api_key=f"mock-{provider}-key", base_url=base_url, instance=existing)
    # Keys are shown once: each run revokes the previous demo key and prints a new one.
    for old in user.api_keys.filter(name=DEMO_KEY_NAME, revoked__isnull=True):
        services.api_key_revoke(key=old)
    _key, secret = services.api_key_issue(user=user, name=DEMO_KEY_NAME)
    site = settings.SITE_URL
    out.write(f"AURA demo is ready: {site}/")
    out.write(f"  cabinet login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
    out.write(f"  AURA key:      {secret}")
    out.write("  try it:")
    out.write(
        f"    curl {site}/v1/chat/completions -H 'Authorization: Bearer {secret}' "
        '-H \'Content-Type: application/json\' -d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}\''
    )


def _vault_rotate(options, out):
    out.write(
        f"re-encrypted the provider keys of {services.vault_rotate()} users under master key v{services.vault.newest_master_version()}"
    )
    _note_process_cache(out)


COMMANDS = {
    "demo-setup": ("Create or refresh the local demo account, wired to the mock provider.", _demo_setup_args, _demo_setup),
    "key-issue": ("Issue an AURA key and print it (shown once).", _key_issue_args, _key_issue),
    "provider-add": ("Store (or replace) a provider key for a user.", _provider_add_args, _provider_add),
    "vault-rotate": ("Re-encrypt every provider key under the newest master key.", lambda parser: None, _vault_rotate),
    "mock-provider": (
        "Serve imitation OpenAI, Anthropic and Gemini APIs until interrupted (for tests and local runs).",
        _mock_provider_args,
        _mock_provider,
    ),
}
