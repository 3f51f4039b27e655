"""Log redaction: anything shaped like a secret is masked before a record is written."""

import logging
import re
import traceback

# AURA keys, provider keys (sk-..., sk-ant-..., AIza...), bearer tokens, Paddle keys.
_SECRET_PATTERNS = [
    re.compile(r"\b(aura|sk|pdl|ak|gsk|xai|key)[-_][A-Za-z0-9_\-]{12,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)\b(bearer|token|api[_-]?key|password|secret)(\s*[:=]\s*|\s+)['\"]?[^\s'\",;]{6,}"),
]
REDACTED = "[redacted]"
# The one-time tokens of emailed links, in the paths an access log writes: whoever reads the log
# while one is valid could reset the password, confirm an address or cancel a deletion (and an
# alert recipient's token carries the address it names: signed, not encrypted).
_LINK_TOKEN = re.compile(r"(/(?:verify|account/restore|alerts/recipient|reset/[A-Za-z0-9_-]+)/)(?!set-password/)[^/\s?\"']{8,}")


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _LINK_TOKEN.sub(r"\1" + REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """Formats the message once, redacts it, and drops request objects and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        # Django attaches the HttpRequest to request-error records; its body must never be formatted.
        if hasattr(record, "request"):
            record.request = None
        if record.exc_info and record.exc_info[1] is not None:
            # Keep where it happened and the exception class, never its message: it may quote input.
            exc_type, _, tb = record.exc_info
            stack = "".join(traceback.format_tb(tb))
            record.msg = f"{record.msg}\n{stack}{exc_type.__module__}.{exc_type.__qualname__} (message withheld)"
            record.exc_info = None
            record.exc_text = None
        return True
