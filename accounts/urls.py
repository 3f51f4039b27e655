from django.contrib.auth import views as auth_views
from django.urls import path

from . import privacy_views, views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/2fa/", views.login_two_factor, name="login_two_factor"),
    path("settings/2fa/", views.two_factor_settings, name="two_factor"),
    path("settings/2fa/<str:action>/", views.two_factor_manage, name="two_factor_manage"),
    path("settings/sessions/<int:pk>/end/", views.session_revoke, name="session_revoke"),
    path("settings/sessions/end-others/", views.sessions_revoke_others, name="sessions_revoke_others"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("verify/<str:token>/", views.verify_email, name="verify_email"),
    path("verify-resend/", views.resend_verification, name="resend_verification"),
    path("reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(template_name="accounts/password_reset_confirm.html"),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html"),
        name="password_reset_complete",
    ),
    path("settings/", views.settings_page, name="settings"),
    path("settings/password/", views.password_change, name="password_change"),
    path("settings/privacy/", privacy_views.privacy_settings, name="privacy_settings"),
    path("settings/privacy/choices/", privacy_views.privacy_choices, name="privacy_choices"),
    path("settings/privacy/export/", privacy_views.export_request, name="export_request"),
    path("settings/privacy/exports/<uuid:pk>/", privacy_views.export_download, name="export_download"),
    path("settings/privacy/delete/", privacy_views.delete_account, name="delete_account"),
    path("account/restore/<str:token>/", privacy_views.cancel_deletion, name="cancel_deletion"),
    path("language/", views.set_language, name="set_language"),
    path("theme/", views.set_theme, name="set_theme"),
]
