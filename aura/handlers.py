"""Two WSGI handlers behind one application: the site (Django's, with all its middleware), and /v1.

``/v1`` serves programs, not browsers: no session, CSRF, language, messages or CSP to set up, and
its views answer every error in OpenAI's shape themselves. So it skips Django's request cycle
altogether. Its views read only a request's method, its WSGI environ (``META``) and its body, and
that is all ``ApiRequest`` holds; the view's response goes straight to the server. Django's
handler, its request object, its URLconf switch, its request signals and its response iteration
cost a tenth of a streamed call's CPU in bench/gateway.py's burst (py-spy), for nothing /v1 uses.

What the request cycle did that /v1 needs is done here:

- the security middleware's response headers (HSTS, nosniff, referrer and opener policies), by the
  middleware itself; a request it would redirect to HTTPS goes through Django's full cycle
  (``_DjangoApi``), so the redirect, and the Host check it makes, are Django's own;
- the routes are ``gateway.api_urls``, resolved by Django's resolver (once per distinct path);
- the database connections a call opened are closed (handed back to the pool) when its answer is
  over, as Django's ``request_finished`` receiver does, and the response's closers run;
- whatever escapes a view (they catch everything themselves) is logged by class and answered
  with an OpenAI-shaped 500, never a traceback.

Django's test client still takes /v1 through Django (the site's URLconf includes the same routes),
so the views work either way; the tests' live server serves this application, as gunicorn does.
"""

import functools
import logging
import sys

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import LimitedStream, WSGIHandler, get_path_info
from django.db import close_old_connections
from django.http import JsonResponse
from django.middleware.security import SecurityMiddleware
from django.urls import get_resolver

from aura import cache

API_PREFIX = "/v1/"
API_URLCONF = "gateway.api_urls"

log = logging.getLogger(__name__)


class ApiRequest:
    """A /v1 request as the views read it: ``method``, ``META`` (the WSGI environ) and ``read``."""

    __slots__ = ("META", "method", "path", "_body")

    def __init__(self, environ: dict):
        self.META = environ
        self.method = environ["REQUEST_METHOD"].upper()
        self.path = get_path_info(environ) or "/"
        self._body = None

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            stream = self.META["wsgi.input"]
            if not self.META.get("CONTENT_LENGTH") and self.META.get("wsgi.input_terminated"):
                # No length (a chunked body, as Go's and Node's clients send when they do not know it):
                # the server (gunicorn) decodes it and ends the stream where the body ends.
                self._body = stream
            else:
                try:
                    length = int(self.META.get("CONTENT_LENGTH") or 0)
                except ValueError:
                    length = 0
                # As Django's request: never past the declared length (a server may hand over the raw socket).
                self._body = LimitedStream(stream, max(length, 0))
        return self._body.read(size)

    def is_secure(self) -> bool:
        return _scheme(self.META) == "https"


def _scheme(environ: dict) -> str:
    """As ``HttpRequest.scheme``: the proxy's header when SECURE_PROXY_SSL_HEADER names one, else the server's."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return "https" if value.split(",", 1)[0].strip() == secure_value else "http"
    return environ.get("wsgi.url_scheme", "http")


@functools.lru_cache(maxsize=1024)
def _route(path: str):
    """(view, arguments, keyword arguments) for a /v1 path; the URLconf ends with a catch-all, so every /v1 path has one."""
    match = get_resolver(API_URLCONF).resolve(path)
    return match.func, match.args, tuple(match.kwargs.items())


class ApiHandler:
    def __init__(self):
        self.security = SecurityMiddleware(lambda request: None)  # reads its settings once, as in Django
        self.django = _DjangoApi()

    def __call__(self, environ, start_response):
        request = ApiRequest(environ)
        if self.security.redirect and not request.is_secure():
            return self.django(environ, start_response)  # redirected to HTTPS (or exempt), exactly as Django does
        cache.spinner.call_started()  # until the server closes the answer (``_Answer.close``)
        try:
            return self._answer(request, start_response)
        except BaseException:  # (the views answer every error: a killed greenlet, or a bug here)
            cache.spinner.call_ended()
            raise

    def _answer(self, request: ApiRequest, start_response):
        close_old_connections()  # as Django's request_started: a connection left over from before, if unusable
        try:
            view, args, kwargs = _route(request.path)
            response = view(request, *args, **dict(kwargs))
        except Exception as error:  # the views answer everything themselves: this is a bug between them and here
            _log_unexpected(error)
            response = _internal_error()
        try:
            return self._send(request, response, start_response)
        except Exception as error:  # (a header the server refused): the call still ends, with a 500 of its own
            _log_unexpected(error)
            _end(response)
            failure = _internal_error()
            start_response(f"{failure.status_code} {failure.reason_phrase}", list(failure.items()), sys.exc_info())
            return _Answer(failure, (failure.content,))

    def _send(self, request: ApiRequest, response, start_response):
        """Start the response; the body the server iterates, then closes."""
        self.security.process_response(request, response)
        headers = list(response.items())
        headers += [("Set-Cookie", cookie.OutputString()) for cookie in response.cookies.values()]
        if not response.streaming:
            body = response.content
            if not response.has_header("Content-Length"):
                # Else gunicorn sends a whole JSON answer chunked: three writes (head, body, end) for two.
                headers.append(("Content-Length", str(len(body))))
            start_response(f"{response.status_code} {response.reason_phrase}", headers)
            # HEAD: the GET's head, Content-Length included, and no body (RFC 9110).
            return _Answer(response, (body,) if request.method != "HEAD" else ())
        start_response(f"{response.status_code} {response.reason_phrase}", headers)
        writer = getattr(start_response, "__self__", None)
        if hasattr(response, "is_last_piece") and hasattr(writer, "write_last"):
            return _Stream(response, writer)
        return _Answer(response, response.streaming_content)


def _log_unexpected(error: Exception) -> None:
    log.error("unexpected error in /v1: %s", type(error).__name__)  # the class only: a message may quote input


def _internal_error() -> JsonResponse:
    body = {"message": "AURA hit an internal error. It has been logged; try again.", "type": "server_error"}
    return JsonResponse({"error": {**body, "param": None, "code": "internal_error"}}, status=500)


class _Answer:
    """A response's body for the server to iterate; closing it ends the call (``_end``)."""

    __slots__ = ("response", "pieces", "ended")

    def __init__(self, response, pieces):
        self.response, self.pieces, self.ended = response, pieces, False

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        if self.ended:
            return
        self.ended = True
        try:
            _end(self.response)
        finally:
            cache.spinner.call_ended()


class _Stream(_Answer):
    """A stream that says which piece is its last: that piece leaves with the end of the body, in one
    write (aura/gunicorn_response.py), instead of the end following in a write of its own."""

    __slots__ = ("writer",)

    def __init__(self, response, writer):
        super().__init__(response, response._iterator)  # bytes already: Django's make_bytes would copy each
        self.writer = writer

    def __iter__(self):
        is_last_piece, ended = self.response.is_last_piece, False
        for piece in self.pieces:  # to the generator's end: what follows its last piece (a drain) still runs
            if ended:
                continue  # nothing may follow the body's end (a stream's generator yields nothing more)
            if is_last_piece():
                self.writer.write_last(piece)
                ended = True
            else:
                yield piece


def _end(response) -> None:
    """What Django's ``HttpResponse.close`` does, its signal's receivers included: the response's
    closers run (each on its own), then the database connections the call opened are handed back."""
    for closer in response._resource_closers:
        try:
            closer()
        except Exception as error:
            log.error("closing a /v1 response failed: %s", type(error).__name__)
    response._resource_closers.clear()
    response.closed = True
    close_old_connections()


class _DjangoApi(WSGIHandler):
    """/v1 through Django's request cycle, behind the security middleware alone."""

    def get_response(self, request):
        request.urlconf = API_URLCONF  # only the /v1 routes to search
        return super().get_response(request)

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(SecurityMiddleware(convert_exception_to_response(self._get_response)))


class Application:
    """Sends /v1/… to the API handler and everything else to the site."""

    def __init__(self):
        self.site = WSGIHandler()
        self.api = ApiHandler()

    def __call__(self, environ, start_response):
        handler = self.api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else self.site
        return handler(environ, start_response)
