import logging

from aura.logging import RedactSecretsFilter, redact


def test_key_shaped_strings_are_redacted():
    text = "calling with sk-proj-abcdefghijklmnop1234 and aura_9f8e7d6c5b4a3f2e1d0c and AIzaSyA1234567890abcdefghijkl"
    cleaned = redact(text)
    assert "sk-proj" not in cleaned and "aura_9f8e" not in cleaned and "AIzaSy" not in cleaned
    assert cleaned.count("[redacted]") == 3


def test_authorization_values_are_redacted():
    assert "s3cr3tvalue" not in redact("Authorization: Bearer s3cr3tvalue")
    assert "hunter2hunter2" not in redact("password=hunter2hunter2")


def test_the_filter_drops_arguments_requests_and_exception_messages(caplog):
    logger = logging.getLogger("tests.redaction")
    logger.addFilter(RedactSecretsFilter())
    try:
        try:
            secret = "the secret " + "plan"
            raise ValueError(f"prompt text: {secret}")
        except ValueError:
            logger.exception("upstream failed for key %s", "sk-live-0123456789abcdef", extra={"request": object()})
    finally:
        logger.filters.clear()
    [record] = caplog.records
    assert "sk-live" not in caplog.text
    assert "the secret plan" not in caplog.text
    assert "ValueError (message withheld)" in caplog.text
    assert record.request is None
