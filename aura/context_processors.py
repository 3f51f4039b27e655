from django.conf import settings


def site(request):
    return {
        "SITE_URL": settings.SITE_URL,
        "SUPPORT_EMAIL": settings.SUPPORT_EMAIL,
        "PRIVACY_EMAIL": settings.PRIVACY_EMAIL,
    }
