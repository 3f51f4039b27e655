from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("robots.txt", views.robots, name="robots"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("privacy/", views.privacy, name="privacy"),
    path("terms/", views.terms, name="terms"),
    path("contact/", views.contact, name="contact"),
    path("", include("accounts.urls")),
    path("", include("metrics.urls")),
    path("", include("gateway.urls")),
    path("", include("billing.urls")),
    path("admin/", admin.site.urls),
]

handler400 = "aura.views.error_400"
handler403 = "aura.views.error_403"
handler404 = "aura.views.error_404"
handler500 = "aura.views.error_500"
