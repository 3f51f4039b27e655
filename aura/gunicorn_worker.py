"""The web workers' gunicorn worker class: gevent's, stopping so that no stream goes unaccounted.

Told to stop (SIGTERM: a deploy, a restart), a gevent worker lets its requests finish for
``--graceful-timeout`` seconds, then kills what is left; the master kills the worker itself at
that same moment and wins, so a stream still running then ended with nothing written: no usage
record, and no word to the client. This worker ends the streams still running a few seconds
before that, the way a stream ends when the provider breaks off (an error event to the client, its
usage record with the tokens sent), and the worker then exits as usual, flushing what it holds.
"""

import gevent
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

# Seconds kept, before the master's kill, for the streams to settle and the worker to exit.
SETTLE_SECONDS = 5.0


def stream_deadline(graceful_timeout: float) -> float:
    """When, after the stop signal, the streams still running are ended."""
    return max(graceful_timeout - SETTLE_SECONDS, graceful_timeout / 2)


def _end_streams() -> None:
    from gateway.pipeline import end_streams  # (the app's code: loaded by the worker, not by this class's module)

    end_streams()


class GeventWorker(_GeventWorker):
    _ending = None

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        if self._ending is None:  # (a second SIGTERM changes nothing)
            self._ending = gevent.spawn_later(stream_deadline(self.cfg.graceful_timeout), _end_streams)
