"""The shared cache, used so that its failure never fails a request.

Every call gives up quietly when Redis is down or frozen: short socket timeouts
bound the first wait, then the cache is skipped for a few seconds so a dead
Redis costs one timeout, not one per operation. One log line a minute.

One backend per process, shared by every thread and greenlet. Django's own
``cache`` is one object per greenlet under gevent, and each builds its own
Redis connection pool and a new client per operation: on the /v1 hot path that
cost more than the Redis commands themselves. Keys and values stay in Django's
format, so ``django.core.cache.cache`` reads what this module writes.
"""

import atexit
import logging
import os
import select
import threading
import time
import weakref

import gevent
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.signals import setting_changed
from django.dispatch import receiver
from gevent import monkey as _monkey
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.commands import CoreCommands
from redis.connection import DefaultParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

_poll = _monkey.get_original("select", "poll")  # the system's poll, not gevent's cooperative one (see RedisParser)

log = logging.getLogger(__name__)

SKIP_SECONDS = 5
_down_until = 0.0
_last_log = 0.0
_backend = None


class _OneClient(RedisCacheClient):
    """Django's Redis client, keeping one redis-py client per pool instead of building one per operation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisParser(DefaultParser):
    """redis-py's parser, with a cheaper check of a pooled connection before each use.

    The pool asks whether a connection it hands out has unread bytes (it must not); redis-py asks
    with ``select.poll``, which under gevent is a cooperative poll that costs more than the Redis
    command itself (a tenth of a streamed call's CPU in bench/gateway.py, under py-spy). The usual
    answer (nothing buffered, nothing to read) comes from one zero-timeout system poll; anything
    else goes through redis-py's own checks.
    """

    def can_read(self, timeout: float = 0) -> bool:
        reader, sock = getattr(self, "_reader", None), getattr(self, "_sock", None)
        if timeout == 0 and reader is not None and sock is not None and not reader.has_data():
            pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
            if not (pending and pending()):
                poller = _poll()
                poller.register(sock.fileno(), select.POLLIN)
                if not poller.poll(0):
                    return False
        return super().can_read(timeout)


def backend():
    """This process's cache backend (built on first use, rebuilt when a test changes CACHES)."""
    global _backend
    if _backend is None:
        made = caches.create_connection(DEFAULT_CACHE_ALIAS)
        if isinstance(made, RedisCache):
            made._class = _OneClient
        _backend = made
    return _backend


@receiver(setting_changed)
def _forget_backend(setting, **kwargs):
    global _backend
    if setting == "CACHES":
        _backend = None


def redis():
    """The redis-py client behind the cache, or None when the cache is not Redis (the embedded default)."""
    made = backend()
    return made._cache.get_client(write=True) if isinstance(made, RedisCache) else None


def raw_key(key: str) -> str:
    """The name Redis knows a cache key by (prefix and version added), for pipelines and scripts."""
    return backend().make_key(key)


def guarded(operation: str, call, default):
    """Run ``call``; on any cache failure return ``default`` and skip the cache for a few seconds."""
    if skipping():
        return default
    try:
        return call()
    except Exception as error:
        failed(operation, error)
        return default


def skipping() -> bool:
    """Whether the cache is being skipped after a failure (``guarded`` returns its default meanwhile)."""
    return time.monotonic() < _down_until


def failed(operation: str, error: Exception) -> None:
    """A cache failure: the cache is skipped for a few seconds; logged at most once a minute, by class."""
    global _down_until, _last_log
    now = time.monotonic()
    _down_until = now + SKIP_SECONDS
    if now - _last_log > 60:
        _last_log = now
        log.warning("shared cache unavailable (%s during %s); going on without it", type(error).__name__, operation)


def get_many_raw(keys: list[str]) -> dict[str, bytes]:
    """Several keys' stored bytes in one round trip (Redis only: {} otherwise); ``loads`` decodes them."""
    client = redis()
    if client is None:
        return {}

    def run():
        values = client.mget([raw_key(key) for key in keys])
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    return guarded("get_many", run, {})


def loads(value: bytes):
    """A cache value from the bytes Redis holds, as Django's cache would return it."""
    return backend()._cache._serializer.loads(value)


def get(key: str, default=None):
    return guarded("get", lambda: backend().get(key, default), default)


def get_many(keys: list[str]) -> dict:
    """Several keys in one round trip; the missing ones are absent from the answer."""
    return guarded("get_many", lambda: backend().get_many(keys), {})


def set(key: str, value, timeout: int) -> None:  # noqa: A001 (mirrors the cache API)
    guarded("set", lambda: backend().set(key, value, timeout), None)


def add(key: str, value, timeout: int) -> bool:
    return guarded("add", lambda: backend().add(key, value, timeout), False)


def delete(key: str) -> None:
    guarded("delete", lambda: backend().delete(key), None)


def incr(key: str, timeout: int) -> int | None:
    """Atomically count within a window that starts with the first hit."""

    def count():
        client = redis()
        if client is None:
            made = backend()
            made.add(key, 0, timeout)
            return made.incr(key)
        name = raw_key(key)
        pipe = client.pipeline(transaction=False)
        pipe.set(name, 0, ex=timeout, nx=True)
        pipe.incr(name)
        return pipe.execute()[1]

    return guarded("incr", count, None)


class _Call:
    __slots__ = ("add", "replies", "error", "lead", "done", "then")

    def __init__(self, add, then=None):
        self.add, self.replies, self.error, self.lead = add, None, None, False
        self.done = threading.Event()
        self.then = then  # a deferred call's: given (replies, error) by whoever made its round trip


class _Commands(CoreCommands):
    """What a round trip's calls ask of Redis: redis-py's command methods (``set``, ``evalsha``...),
    each noting its arguments instead of running."""

    def __init__(self):
        self.stack: list[tuple[tuple, dict]] = []

    def execute_command(self, *args, **options):
        self.stack.append((args, options))
        return self


def _nothing(commands) -> None:
    """The commands of a call made only for the round trip itself (``flush``)."""


class _RoundTrips:
    """Group commit: the calls a process makes while a round trip is under way share the next one.

    One round trip is in flight per client at a time. The first call sends its own once everything
    else ready to run has run (so that calls made in the same wave join it); calls made meanwhile
    queue, and when the reply comes the first of them sends everyone's commands in one write.
    Alone, a call costs what it did. In bench/gateway.py's burst of a thousand streams (two calls
    each), Redis read 1,000-1,600 batches per burst when the first call sent at once, 300-1,000
    with the wait, and AURA's CPU per stream fell with them.

    A call nobody waits for (``defer``: the settling of a /v1 call whose answer has left) rides along
    with the next round trip, ahead of the commands of the calls that join it, or leaves in one of
    its own once the event loop turns. So a connection's next call is admitted in the same round
    trip that settles the one before (the slot it freed is free for it), and under load the
    settlings add commands, not round trips: 0.90-0.95x the instructions per sequential call
    (bench/instructions.py, callgrind), and in bench/gateway_ab.py added latency 0.90x, CPU per
    call at 50 connections 0.91x. A deferred call's ``then`` runs in whichever greenlet makes the
    round trip, often another request's.

    Since only one is in flight, the round trips need no pool: they go over a connection of their
    own, made with the client's settings (address, credentials, database, TLS, timeouts). The
    commands are packed, sent and read by redis-py's connection, and each reply goes through the
    client's reply callbacks, as a pipeline's would: redis-py's pipeline object cost 111-137 us of
    CPU per round trip under gevent, against 71 us here (a /v1 call makes two).
    """

    def __init__(self, client):
        # The pool and the callbacks, not the client: ``_round_trips`` forgets these with the client.
        self.pool = client.connection_pool
        self.callbacks = client.response_callbacks
        self.lock = threading.Lock()
        self.queue: list[_Call] = []
        self.busy = False
        self.pid = os.getpid()
        self.connection = None  # kept between round trips only while in step with the server
        self.flush_due = False  # deferred calls wait, and a flush is on its way

    def run(self, add) -> list:
        call = _Call(add)
        with self.lock:
            self.queue.append(call)
            call.lead, self.busy = not self.busy, True
        if not call.lead:
            try:
                call.done.wait()  # answered, or asked to lead the next round trip
            except BaseException:  # killed while waiting: never leave the queue without a leader
                self._leave(call)
                raise
        if call.lead:
            try:
                self._wait_for_the_wave()
            except BaseException:  # killed before sending: the next call in line leads instead
                self._leave(call)
                raise
            self._send()
        if call.error is not None:
            raise call.error
        return call.replies

    def defer(self, add, then) -> None:
        """Queue commands that nobody waits for: they go with the next round trip this process makes
        (ahead of its own commands), or in one of their own once the event loop turns. Whoever
        makes it calls ``then(replies, error)``, which must be quick and must not raise."""
        call = _Call(add, then)
        with self.lock:
            self.queue.append(call)
            if self.busy or self.flush_due:
                return
            self.flush_due = True
        _soon(self._flush)

    def _flush(self) -> None:
        """(From the event loop.) The deferred calls nobody took along leave in a round trip of their own."""
        with self.lock:
            if self.busy or not self.queue:  # taken along already, or being
                self.flush_due = False
                return
        _spawn(self._lead_deferred)

    def _lead_deferred(self) -> None:
        with self.lock:
            self.flush_due = False
            if self.busy or not self.queue:  # a call that came meanwhile took them along
                return
            self.busy = True
        self._send()

    def flush(self) -> None:
        """Make the round trip for the deferred calls still queued, now (a process about to exit): behind
        the one under way, if any, as the next call would."""
        with self.lock:
            if not self.queue:
                return
        self.run(_nothing)

    @staticmethod
    def _wait_for_the_wave() -> None:
        """Let every greenlet (or thread) that is ready to run go first: those about to make a call join
        this round trip instead of waiting for the next. In a burst they come in waves (a thousand
        requests accepted at once); alone, this costs one pass of the event loop."""
        time.sleep(0)

    def _send(self) -> None:
        with self.lock:
            calls, self.queue = self.queue, []
        try:
            connection, kept = self._take_connection()
            commands = _Commands()
            packed: list = []
            spans = []
            for call in calls:
                start = len(commands.stack)
                try:
                    call.add(commands)
                    packed += connection.pack_commands([args for args, _ in commands.stack[start:]])  # a value Redis cannot take fails here
                except Exception as error:  # this call's own mistake: the others go on
                    del commands.stack[start:]
                    call.error = error
                spans.append((start, len(commands.stack)))
            if commands.stack:
                waited = any(call.then is None for call in calls)  # (only deferred calls: nobody waits for the replies)
                replies = self._exchange(connection, kept, b"".join(packed), commands.stack, waited)
            else:  # nothing to send: a kept connection stays kept
                replies, self.connection = [], connection if kept else None
            for call, (start, end) in zip(calls, spans, strict=True):
                if call.error is None:
                    call.replies = replies[start:end]
        except Exception as error:
            for call in calls:
                call.error = call.error or error
        except BaseException:  # this greenlet was killed mid-trip: the others must not wait forever
            for call in calls:
                call.error = call.error or RedisConnectionError("round trip abandoned")
            raise
        finally:
            try:
                for call in calls:
                    call.lead = False
                    call.done.set()
                for call in calls:  # (in whichever greenlet made the trip, often another request's)
                    if call.then is not None:
                        try:
                            call.then(call.replies, call.error)
                        except Exception as error:  # (it must not raise): the other calls still get theirs
                            log.error("a deferred Redis call's follow-up failed: %s", type(error).__name__)
            finally:  # whatever happened above, the next round trip has a leader
                with self.lock:
                    flush = self._hand_on()
                if flush:
                    _soon(self._flush)

    def _take_connection(self):
        """(connection, whether it is one kept from an earlier round trip); a new one connects on first use."""
        connection, self.connection = self.connection, None  # kept again only when every reply was read
        if connection is not None and not _closed_or_dirty(connection):
            return connection, True
        if connection is not None:
            connection.disconnect()  # the server closed it while idle (a restart, a timeout): a new one
        return self._new_connection(), False

    def _new_connection(self):
        return self.pool.connection_class(**self.pool.connection_kwargs)

    def _exchange(self, connection, kept: bool, packed: bytes, stack: list[tuple[tuple, dict]], waited: bool = True) -> list:
        """Send the commands in one write and read every reply (a failed command's is its exception)."""
        try:
            try:
                connection.send_packed_command([packed])
                if waited:
                    spinner.wait(connection)
                first = self._reply(connection, *stack[0])
            except RedisConnectionError:
                if not kept:
                    raise
                # A kept connection that broke unseen (closed by the server or a proxy as it sat
                # idle): nothing came back, so the commands go once more on a new connection, as
                # redis-py's own retry would send them. A timeout is not retried.
                connection.disconnect()
                connection = self._new_connection()
                connection.send_packed_command([packed])
                first = self._reply(connection, *stack[0])
            replies = [first, *(self._reply(connection, args, options) for args, options in stack[1:])]
        except BaseException:  # replies left unread (a timeout, a killed greenlet): the connection is out of step
            connection.disconnect()
            raise
        self.connection = connection
        return replies

    def _reply(self, connection, args: tuple, options: dict):
        """One command's reply, as redis-py's pipeline gives it: through the client's callback for the
        command, or the error Redis answered (then the connection is still in step)."""
        try:
            reply = connection.read_response(disable_decoding=NEVER_DECODE in options)
        except ResponseError as error:
            return options[EMPTY_RESPONSE] if EMPTY_RESPONSE in options else error
        callback = self.callbacks.get(args[0])
        if callback is None:
            return reply
        try:
            return callback(reply, **{k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")})
        except Exception as error:  # a reply its callback cannot read fails only its own command
            return error

    def _leave(self, call: _Call) -> None:
        with self.lock:
            if call in self.queue:
                self.queue.remove(call)
            flush = call.lead and self._hand_on()
        if flush:
            _soon(self._flush)

    def _hand_on(self) -> bool:
        """(Under the lock.) The next queued call that waits leads the next round trip (taking the
        deferred calls ahead of it along); with none, the next to come. True: only deferred calls
        are left, and the caller must ask for a flush (``_soon(self._flush)``, once out of the lock)."""
        waiting = next((call for call in self.queue if call.then is None), None)
        if waiting is not None:
            waiting.lead = True
            waiting.done.set()
            return False
        self.busy = False
        if self.queue and not self.flush_due:
            self.flush_due = True
            return True
        return False


class _Spinner:
    """A short spin for a round trip's reply, when the process has nothing else to do.

    Under gevent, a greenlet waiting for Redis gives its core back to the event loop, which sleeps
    in ``epoll_wait`` until the reply comes. On this 2-core virtual machine that sleep and the
    wake-up cost more than the Redis script itself: a loopback ping-pong took 90-117 µs with both
    sides sleeping, 38-46 µs with one side polling. So while the process serves a single /v1 call,
    whose round trip this is (nothing else could use the core meanwhile), the reply is awaited by
    polling the socket for up to ``AURA_REDIS_SPIN_MICROSECONDS``, and only then through the event
    loop. With more calls in flight (a stream counts until it ends) it never spins: the core is
    theirs; nor for a round trip nobody waits for (deferred calls alone). A Redis that does not
    answer within the spin three times in a row (a distant one) is not spun for again for
    ``BACKOFF_SECONDS``. ``caught`` and ``missed`` count the spins that saw the reply come and those
    that gave up.
    """

    MISSES = 3
    BACKOFF_SECONDS = 10.0

    def __init__(self):
        self.serving = 0  # /v1 calls this process is serving (aura.handlers counts them)
        self.caught = self.missed = 0
        self.misses_in_a_row = 0
        self.resume_at = 0.0

    def call_started(self) -> None:
        self.serving += 1

    def call_ended(self) -> None:
        self.serving -= 1

    def wait(self, connection) -> None:
        """(Just after the round trip's commands were sent.) Returns when the reply is there, or the
        spin is over, or at once when spinning would take the core from someone."""
        if self.serving > 1 or not _monkey.is_module_patched("socket"):
            return
        budget = settings.AURA_REDIS_SPIN_MICROSECONDS
        sock = getattr(connection, "_sock", None)
        now = time.perf_counter()
        if not budget or sock is None or now < self.resume_at:
            return
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN)
        deadline = now + budget / 1_000_000
        while not poller.poll(0):
            if time.perf_counter() > deadline:
                self.missed += 1
                self.misses_in_a_row += 1
                if self.misses_in_a_row >= self.MISSES:
                    self.misses_in_a_row, self.resume_at = 0, time.perf_counter() + self.BACKOFF_SECONDS
                return
        self.caught += 1
        self.misses_in_a_row = 0


spinner = _Spinner()


def _closed_or_dirty(connection) -> bool:
    """Whether an idle connection has anything to read: the server's close, or bytes nobody asked for."""
    try:
        return connection.can_read()
    except (RedisConnectionError, OSError):
        return True


# Per client, for as long as the client lives (tests and settings changes make new ones).
_round_trips: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _soon(function) -> None:
    """Call ``function`` once the event loop turns (under gevent), else at once. Under gevent it is
    called from the main thread's greenlets (a web worker has no other threads that call Redis):
    from another native thread, the callback would wait on that thread's own hub."""
    if _monkey.is_module_patched("socket"):
        gevent.get_hub().loop.run_callback(function)
    else:
        function()


def _spawn(function) -> None:
    if _monkey.is_module_patched("socket"):
        gevent.spawn(function)
    else:
        function()


def defer(client, add, then) -> None:
    """``round_trip`` for commands nobody waits for: they ride along with the process's next round
    trip, or leave in one of their own as soon as the event loop turns; ``then(replies, error)``
    follows (a failed command's reply is its exception; ``error``: Redis could not be reached)."""
    _trips(client).defer(add, then)


@atexit.register
def flush_deferred() -> None:
    """At exit (a worker told to stop): the deferred calls still queued leave now."""
    for trips in list(_round_trips.values()):
        if trips.pid == os.getpid():
            try:
                trips.flush()
            except Exception as error:  # Redis is down: the deferred calls' follow-ups have been told
                log.warning("deferred Redis calls not sent at exit: %s", type(error).__name__)


def _trips(client) -> "_RoundTrips":
    trips = _round_trips.get(client)
    if trips is None or trips.pid != os.getpid():  # a forked process makes its own connection
        trips = _round_trips[client] = _RoundTrips(client)
    return trips


def round_trip(client, add) -> list:
    """The replies to the commands ``add(pipe)`` notes (redis-py's command methods, as on a pipeline),
    sent with those of the calls made at the same time (a failed command's reply is its exception).
    Raises if Redis does."""
    return _trips(client).run(add)


def reset() -> None:
    """Forget a past failure (tests, and after an operator fixes Redis): the next one is logged again."""
    global _down_until, _last_log
    _down_until = 0.0
    _last_log = 0.0
