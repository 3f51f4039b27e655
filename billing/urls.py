from django.urls import path

from . import views

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("billing/", views.billing_page, name="billing"),
    path("billing/cancel/", views.cancel, name="billing_cancel"),
    path("billing/keep/", views.keep, name="billing_keep"),
    path("billing/change/", views.change_plan, name="billing_change"),
    path("billing/payment-method/", views.payment_method, name="billing_payment_method"),
    path("billing/portal/", views.portal, name="billing_portal"),
    path("billing/invoices/<str:transaction_id>/", views.invoice, name="billing_invoice"),
    path("billing/paddle/webhook/", views.webhook, name="paddle_webhook"),
]
