"""gunicorn's logger for AURA's web processes: an access line per request, except successful chat and embeddings calls.

Every answered chat or embeddings call already has its usage record (status, latency, IP, user
agent, request id), kept and purged as the privacy policy says; a second line per call in the
process's output would be another copy of each caller's IP to manage, and cost a fifth of a
millisecond of a call here (bench/gateway_ab.py). Failed calls (4xx, 5xx: a bad key, a limit, an
upstream error) and every other request, /v1/models included, keep their line.
"""

import logging

from gunicorn.glogging import Logger

from aura.logging import RedactSecretsFilter

# The /v1 endpoints that write a usage record for every call they answer.
RECORDED = ("/v1/chat/completions", "/v1/embeddings")


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time):
        status = getattr(resp, "status_code", None)
        if status is not None and status < 400 and environ.get("PATH_INFO") in RECORDED:
            return
        super().access(resp, req, environ, request_time)


def redact() -> None:
    """Mask key-shaped text in gunicorn's own logs, as Django's are (aura.logging): gunicorn logs a
    request it cannot parse with the offending line (a header with no colon, ``Authorization Bearer
    aura_...``, whole), and the access line holds the query string a client may have put a key in.
    Its loggers do not pass their records to the root's handlers, so the filter goes on them."""
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in logger.filters):
            logger.addFilter(RedactSecretsFilter())
