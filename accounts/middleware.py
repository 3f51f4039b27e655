from django.conf import settings
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation.trans_real import parse_accept_lang_header

# Django's language cookie, which AURA set until it kept the choice in localStorage, as its privacy
# policy says (§8): a browser that still holds it has it removed.
OLD_LANGUAGE_COOKIE = "django_language"


def supported(code: str | None) -> str | None:
    """``code`` as one of settings.LANGUAGES ("ru-RU" is "ru"), or None."""
    if not code:
        return None
    try:
        return translation.get_supported_language_variant(code)
    except LookupError:
        return None


def language_of(request) -> str:
    """The language a page is rendered in, with no cookie: a signed-in user's saved language, else
    the address's ``lang`` (a visitor's choice, which the browser keeps in localStorage and the
    page's scripts carry from page to page), else the browser's Accept-Language, else English."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and supported(user.language):
        return supported(user.language)
    chosen = supported(request.GET.get("lang"))
    if chosen:
        return chosen
    for code, _quality in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        if code != "*" and supported(code):
            return supported(code)
    return settings.LANGUAGE_CODE


class LanguageMiddleware:
    """Django's LocaleMiddleware, without its cookie (``language_of``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        language = language_of(request)
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        patch_vary_headers(response, ("Accept-Language",))
        response.headers.setdefault("Content-Language", language)
        if OLD_LANGUAGE_COOKIE in request.COOKIES:
            response.delete_cookie(OLD_LANGUAGE_COOKIE, samesite="Lax")
        return response


class SessionActivityMiddleware:
    """Keeps "last seen" of the browser sessions the Settings page lists."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/v1/"):
            return response
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            from .security import session_touch

            session_touch(request=request)
        return response
