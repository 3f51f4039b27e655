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
    path("v1/models/<path:model_id>", views.model),
    re_path(r"^v1/(?P<rest>.*)$", views.not_found),
]
