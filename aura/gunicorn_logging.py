"""gunicorn's logger for AURA's web processes: an access line per request, except for /v1 calls that succeeded.

Every answered /v1 call already has its usage record (status, latency, IP, user agent, request id),
kept and purged as the privacy policy says; a second line per call in the process's output would
be another copy of each caller's IP to manage, and cost about a tenth of a millisecond of a call's
CPU here. /v1 requests that failed (4xx, 5xx: a bad key, a limit, an upstream error) keep their line.
"""

from gunicorn.glogging import Logger


class AccessLogger(Logger):
    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO", "").startswith("/v1/") and (resp.status_code or 0) < 400:
            return
        super().access(resp, req, environ, request_time)
