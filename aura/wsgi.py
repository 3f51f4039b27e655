import gc
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura.settings")
django.setup(set_prefix=False)

from aura.handlers import Application  # noqa: E402 -- after django.setup()

application = Application()

# Pay start-up costs before the first request, not during it.
from gevent import monkey  # noqa: E402

from aura import dns  # noqa: E402
from gateway import catalog, tokenizer  # noqa: E402
from metrics import spool  # noqa: E402

tokenizer.warm_up()
catalog.load()
if monkey.is_module_patched("socket"):  # a gevent web worker
    dns.install()
if "gunicorn" in sys.modules:  # served by gunicorn: fewer writes per response, its own errors in OpenAI's shape, its logs redacted
    from aura import gunicorn_logging, gunicorn_response

    gunicorn_response.install()
    gunicorn_logging.redact()
# Each web process moves the usage records its calls spool in Redis into PostgreSQL.
spool.start_flusher()

# The cyclic garbage collector, set for a web process. A burst of a thousand streams keeps
# thousands of young objects alive at once; with Python's default thresholds (700, 10, 10) the
# collector walked them again and again: 11-15 % of the workers' time in bench/gateway.py's
# burst (py-spy --native), 2 % with these. What start-up made (Django, the catalog, the
# tokenizer's tables) is frozen, so that no full collection walks it again (41 ms each here).
gc.freeze()
gc.set_threshold(20_000, 20, 20)
