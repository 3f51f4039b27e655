"""A page for a request a site view does not take by its method (a link followed to a form's address)."""

from django.shortcuts import render


class MethodNotAllowedPage:
    """Django answers a GET to a POST-only view (``require_POST``: log out, revoke a key) with an empty
    405, which a browser shows as a blank page. This gives it the site's error page, Allow header kept.
    /v1 never comes here: its views answer in OpenAI's shape themselves."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.content or response.streaming:
            return response
        page = render(request, "errors/405.html", status=405)
        if response.has_header("Allow"):
            page["Allow"] = response["Allow"]
        return page
