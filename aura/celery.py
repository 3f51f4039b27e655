import os
import threading
from collections import deque

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura.settings")

app = Celery("aura")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _django_logging(**_options) -> None:
    """The worker and beat log through Django's ``LOGGING``, whose handlers redact key-shaped text
    (aura.logging) and withhold exception messages. Left to itself, Celery replaces the root
    logger's handlers with its own, and a task that failed on a value logged it whole
    (``raised unexpected: KeyError('sk-proj-…')``)."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


_batches = threading.local()


def next_batch(task, *args) -> None:
    """Queue the next batch of a task that works through its rows in batches (retention, rollups, alerts).

    With a broker it is a message like any other. Without one (the embedded defaults run tasks
    eagerly) ``delay`` would run it inside the batch before it, and a backlog of a few hundred
    batches would overflow the stack: the batches run one after another instead, in a loop held by
    the first of them.
    """
    if not app.conf.task_always_eager:
        task.delay(*args)
        return
    queued = getattr(_batches, "queued", None)
    if queued is not None:  # a batch run by the loop below: it runs this one when it returns
        queued.append((task, args))
        return
    _batches.queued = queued = deque([(task, args)])
    try:
        while queued:
            batch, batch_args = queued.popleft()
            batch.apply(args=batch_args, throw=True)
    finally:
        _batches.queued = None
