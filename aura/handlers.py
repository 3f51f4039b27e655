"""Two Django handlers behind one WSGI application: the site, and the /v1 API.

``/v1`` serves programs, not browsers: no session, CSRF, language, messages or CSP
to set up, so it runs behind the security middleware alone (HTTPS redirect, HSTS,
nosniff). Everything else gets the full ``settings.MIDDLEWARE``. The /v1 views
already answer every error in OpenAI's shape themselves.
"""

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.middleware.security import SecurityMiddleware

API_PREFIX = "/v1/"
API_URLCONF = "gateway.api_urls"


class ApiHandler(WSGIHandler):
    def __call__(self, environ, start_response):
        response = super().__call__(environ, start_response)
        writer = getattr(start_response, "__self__", None)
        if response.streaming and hasattr(response, "is_last_piece") and hasattr(writer, "write_last"):
            return _EndsWithLastPiece(response, writer)
        return response

    def get_response(self, request):
        request.urlconf = API_URLCONF  # only the /v1 routes to search
        response = super().get_response(request)
        if not response.streaming and not response.has_header("Content-Length"):
            # Else gunicorn sends a whole JSON answer chunked: three writes (head, body, end) for two.
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(SecurityMiddleware(convert_exception_to_response(self._get_response)))


class _EndsWithLastPiece:
    """A stream that says which piece is its last: that piece leaves with the end of the body, in one
    write (aura/gunicorn_response.py), instead of the end following in a write of its own."""

    def __init__(self, response, writer):
        self.response, self.writer = response, writer

    def __iter__(self):
        ended = False
        for piece in self.response:
            if ended:
                continue  # nothing may follow the body's end (a stream's generator yields nothing more)
            if self.response.is_last_piece():
                self.writer.write_last(piece)
                ended = True
            else:
                yield piece

    def close(self):
        self.response.close()


class Application:
    """Sends /v1/… to the API handler and everything else to the site."""

    def __init__(self):
        self.site = WSGIHandler()
        self.api = ApiHandler()

    def __call__(self, environ, start_response):
        handler = self.api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else self.site
        return handler(environ, start_response)
