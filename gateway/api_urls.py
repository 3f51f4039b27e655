"""The /v1 routes alone: the site's URLconf includes them, and the API handler (aura/handlers.py)
resolves /v1 requests against this short list rather than every page of the site."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("v1/chat/completions", views.chat),
    path("v1/embeddings", views.embeddings),
    path("v1/models", views.models),
    path("v1/openapi.json", views.openapi),
    # [\s\S]: a model id or unknown path holding a newline still reaches a /v1 view, not the HTML 404
    # (an inline (?s) flag would make every URL of the site non-reversible).
    re_path(r"^v1/models/(?P<model_id>[\s\S]+)$", views.model),
    re_path(r"^v1/(?P<rest>[\s\S]*)$", views.not_found),
]
