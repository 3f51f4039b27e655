from django.urls import include, path

from . import cabinet

urlpatterns = [
    path("keys/", cabinet.api_keys, name="api_keys"),
    path("keys/<int:pk>/", cabinet.api_key_settings, name="api_key_settings"),
    path("keys/<int:pk>/revoke/", cabinet.api_key_revoke, name="api_key_revoke"),
    path("providers/", cabinet.provider_keys, name="provider_keys"),
    path("providers/<uuid:pk>/", cabinet.provider_key_replace, name="provider_key_replace"),
    path("providers/<uuid:pk>/delete/", cabinet.provider_key_delete, name="provider_key_delete"),
    path("", include("gateway.api_urls")),
]
