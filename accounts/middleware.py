from django.conf import settings


class UserLanguageMiddleware:
    """A logged-in user's saved language applies in a browser that has not chosen one yet."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        cookie = settings.LANGUAGE_COOKIE_NAME
        user = getattr(request, "user", None)
        adopted = None
        if cookie not in request.COOKIES and user is not None and user.is_authenticated:
            adopted = request.COOKIES[cookie] = user.language
        response = self.get_response(request)
        if adopted and cookie not in response.cookies:
            response.set_cookie(
                cookie, adopted, max_age=settings.LANGUAGE_COOKIE_AGE, samesite="Lax", secure=settings.LANGUAGE_COOKIE_SECURE
            )
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
