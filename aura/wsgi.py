import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura.settings")

application = get_wsgi_application()

# Pay start-up costs before the first request, not during it.
from gateway import catalog, tokenizer  # noqa: E402

tokenizer.warm_up()
catalog.load()
