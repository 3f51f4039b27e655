from django.urls import path

from . import recipients, views

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/charts/", views.usage_charts, name="usage_charts"),
    path("usage/", views.usage_log, name="usage_log"),
    path("usage/export.csv", views.usage_export, name="usage_export"),
    path("notifications/", views.notifications, name="notifications"),
    path("settings/alerts/", views.alert_settings, name="alert_settings"),
    path("alerts/recipient/<str:token>/", recipients.confirm, name="alert_recipient_confirm"),
]
