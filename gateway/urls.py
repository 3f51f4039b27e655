from django.urls import path, re_path

from . import cabinet, views

urlpatterns = [
    path("keys/", cabinet.api_keys, name="api_keys"),
    path("keys/<int:pk>/", cabinet.api_key_settings, name="api_key_settings"),
    path("keys/<int:pk>/revoke/", cabinet.api_key_revoke, name="api_key_revoke"),
    path("providers/", cabinet.provider_keys, name="provider_keys"),
    path("providers/<uuid:pk>/", cabinet.provider_key_replace, name="provider_key_replace"),
    path("providers/<uuid:pk>/delete/", cabinet.provider_key_delete, name="provider_key_delete"),
    path("v1/chat/completions", views.chat),
    path("v1/embeddings", views.embeddings),
    path("v1/models", views.models),
    path("v1/openapi.json", views.openapi),
    # [\s\S]: a model id or unknown path holding a newline still reaches a /v1 view, not the HTML 404
    # (an inline (?s) flag would make every URL of the site non-reversible).
    re_path(r"^v1/models/(?P<model_id>[\s\S]+)$", views.model),
    re_path(r"^v1/(?P<rest>[\s\S]*)$", views.not_found),
]
