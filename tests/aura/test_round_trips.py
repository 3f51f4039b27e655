"""Redis calls made at the same time share one round trip (``aura.cache.round_trip``), and each
gets its own replies back, whatever happens to the others."""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis as redis_py

from aura import cache
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="about Redis round trips")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trips(monkeypatch):
    """The round trips sent, each as the number of calls it carried."""
    sent = []
    send = cache._RoundTrips._send

    def counting(self):
        sent.append(len(self.queue))
        return send(self)

    monkeypatch.setattr(cache._RoundTrips, "_send", counting)
    return sent


def in_threads(calls):
    """Start each call in its own thread (the first alone, the rest while its round trip is under way)."""
    results, errors = {}, {}

    def run(name, call):
        try:
            results[name] = call()
        except Exception as error:
            errors[name] = error

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    threads[0].start()
    time.sleep(0.1)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results, errors


def test_calls_made_while_a_round_trip_is_under_way_share_the_next_and_get_their_own_replies(trips):
    client = cache.redis()
    client.delete("rt:empty", *(f"rt:{n}" for n in range(30)))
    # The first holds its round trip a while: well within the client's 0.5 s socket timeout, even on a busy machine.
    calls = {"first": lambda: cache.round_trip(client, lambda pipe: pipe.blpop("rt:empty", 0.25))}
    for n in range(30):
        calls[n] = lambda n=n: cache.round_trip(client, lambda pipe: (pipe.set(f"rt:{n}", n), pipe.get(f"rt:{n}")))
    results, errors = in_threads(calls)
    assert not errors
    assert results["first"] == [None]
    assert all(results[n] == [True, str(n).encode()] for n in range(30))
    assert trips == [1, 30]  # the first alone, then everyone who came meanwhile


def test_a_failing_command_fails_only_its_own_call(trips):
    client = cache.redis()
    client.set("rt:text", "not a number")
    calls = {
        "first": lambda: cache.round_trip(client, lambda pipe: pipe.blpop("rt:empty", 0.25)),
        "bad": lambda: cache.round_trip(client, lambda pipe: pipe.incr("rt:text")),
        "broken": lambda: cache.round_trip(client, lambda pipe: 1 / 0),
        "good": lambda: cache.round_trip(client, lambda pipe: pipe.echo("fine")),
    }
    results, errors = in_threads(calls)
    assert isinstance(results["bad"][0], redis_py.ResponseError)  # its reply, for the caller to judge
    assert isinstance(errors["broken"], ZeroDivisionError)
    assert results["good"] == [b"fine"]
    assert trips == [1, 3]


def test_when_redis_cannot_be_reached_every_call_is_told_and_the_next_ones_still_run():
    client = redis_py.Redis(port=free_port(), socket_connect_timeout=0.5)
    calls = {n: lambda: cache.round_trip(client, lambda pipe: pipe.ping()) for n in range(5)}
    results, errors = in_threads(calls)
    assert not results and len(errors) == 5
    assert all(isinstance(error, redis_py.ConnectionError) for error in errors.values())
    with pytest.raises(redis_py.ConnectionError):  # not stuck behind a round trip that never ended
        cache.round_trip(client, lambda pipe: pipe.ping())


def under_gevent(body: str, **env: str) -> str:
    """Run ``body`` in a gevent process, as the web workers are (``client``, ``trips`` and ``sent`` set up;
    ``sent`` lists the calls each round trip carried), with ``env`` added to its environment; what it prints."""
    script = textwrap.dedent(
        """
        from gevent import monkey

        monkey.patch_all()
        import sys

        import gevent
        import redis

        from aura.cache import _RoundTrips

        client = redis.Redis.from_url(sys.argv[1])
        sent = []


        class Trips(_RoundTrips):
            def _send(self):
                sent.append(len(self.queue))
                super()._send()


        trips = Trips(client)
        """
    )
    argv = [sys.executable, "-c", script + textwrap.dedent(body), os.environ["REDIS_URL"]]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_call_killed_while_it_waits_does_not_leave_the_others_waiting():
    """Under gevent (the web workers), a greenlet can be killed while it waits its turn, even just as it
    is asked to send the next round trip. The calls behind it still get their replies."""
    printed = under_gevent(
        """
        doomed = []


        class Killing(Trips):
            def _hand_on(self):
                if self.queue and self.queue[0].add is second:
                    doomed[1].kill(block=False)  # lands just as it is asked to send the next round trip
                return super()._hand_on()


        trips = Killing(client)
        leader = gevent.spawn(trips.run, lambda pipe: pipe.blpop("rt:empty", 0.3))
        gevent.sleep(0.05)
        first, second = (lambda pipe: pipe.ping()), (lambda pipe: pipe.ping())
        doomed += [gevent.spawn(trips.run, first), gevent.spawn(trips.run, second)]
        gevent.sleep(0.05)
        after = gevent.spawn(trips.run, lambda pipe: pipe.echo("after"))
        gevent.sleep(0.05)
        doomed[0].kill()  # while it waits its turn
        print(leader.get(timeout=5), after.get(timeout=5), [type(g.value).__name__ for g in doomed])
        """
    )
    assert printed == "[None] [b'after'] ['GreenletExit', 'GreenletExit']"


def test_calls_made_in_one_wave_share_one_round_trip():
    """A thousand requests accepted at once reach Redis in a wave: the first call lets the rest of the
    wave run before it sends, so they join its round trip instead of queueing for the next."""
    printed = under_gevent(
        """
        calls = [gevent.spawn(trips.run, lambda pipe, n=n: pipe.echo(str(n))) for n in range(50)]
        gevent.joinall(calls, timeout=5)
        print(sent, all(call.value == [str(n).encode()] for n, call in enumerate(calls)))
        """
    )
    assert printed == "[50] True"


def test_a_leader_killed_before_it_sends_hands_the_round_trip_on():
    printed = under_gevent(
        """
        trips._wait_for_the_wave = lambda: gevent.sleep(0.2)  # the wave takes its time: the kill lands meanwhile
        calls = [gevent.spawn(trips.run, lambda pipe, n=n: pipe.echo(str(n))) for n in range(5)]
        gevent.sleep(0.05)  # each has queued; the first is waiting for the rest of its wave
        calls[0].kill()
        gevent.joinall(calls, timeout=5)
        print(sent, type(calls[0].value).__name__, [call.value for call in calls[1:]])
        """
    )
    assert printed == "[4] GreenletExit [[b'1'], [b'2'], [b'3'], [b'4']]"


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_round_trip():
    client = cache.redis()
    (mine,) = cache.round_trip(client, lambda pipe: pipe.client_id())
    assert client.client_kill_filter(_id=mine) == 1  # as a Redis restart or an idle timeout would
    assert cache.round_trip(client, lambda pipe: pipe.echo("still here")) == [b"still here"]
    (now,) = cache.round_trip(client, lambda pipe: pipe.client_id())
    assert now != mine


def test_a_round_trip_that_timed_out_leaves_no_reply_behind_for_the_next():
    client = redis_py.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=0.2)
    client.delete("rt:late")
    with pytest.raises(redis_py.TimeoutError):
        cache.round_trip(client, lambda pipe: pipe.blpop("rt:late", 1))  # answers after the client gave up
    client.rpush("rt:late", "for nobody")
    time.sleep(1.2)  # the abandoned BLPOP's reply would be waiting on a reused connection by now
    assert cache.round_trip(client, lambda pipe: pipe.echo("mine")) == [b"mine"]
    client.delete("rt:late")


def test_a_connection_that_broke_unseen_is_replaced_and_the_commands_sent_once_more(monkeypatch):
    client = cache.redis()
    client.delete("rt:once")
    (mine,) = cache.round_trip(client, lambda pipe: pipe.client_id())
    monkeypatch.setattr(cache, "_closed_or_dirty", lambda connection: False)  # as if a proxy had dropped it without a word
    client.client_kill_filter(_id=mine)
    assert cache.round_trip(client, lambda pipe: pipe.incr("rt:once")) == [1]
    assert client.get("rt:once") == b"1"  # ran once
    client.delete("rt:once")


def test_a_value_redis_cannot_take_fails_only_its_own_call(trips):
    client = cache.redis()
    calls = {
        "first": lambda: cache.round_trip(client, lambda pipe: pipe.blpop("rt:empty", 0.25)),
        "none": lambda: cache.round_trip(client, lambda pipe: pipe.set("rt:none", None)),
        "good": lambda: cache.round_trip(client, lambda pipe: pipe.echo("fine")),
    }
    results, errors = in_threads(calls)
    assert isinstance(errors["none"], redis_py.DataError)
    assert results["good"] == [b"fine"]
    assert trips == [1, 2]


def test_a_deferred_call_rides_along_with_the_next_round_trip_ahead_of_its_commands():
    """A call that has ended settles with the next call's admission: its commands first, in one round trip."""
    printed = under_gevent(
        """
        client.delete("rt:deferred")
        followed = []
        trips.defer(lambda pipe: pipe.incr("rt:deferred"), lambda replies, error: followed.append((replies, error)))
        print(trips.run(lambda pipe: pipe.get("rt:deferred")), sent, followed)
        gevent.sleep(0.05)  # the event loop turns: nothing is left to send on its own
        print(sent)
        client.delete("rt:deferred")
        """
    )
    assert printed.splitlines() == ["[b'1'] [2] [([1], None)]", "[2]"]


def test_a_deferred_call_nobody_takes_along_leaves_once_the_event_loop_turns():
    printed = under_gevent(
        """
        followed = []
        trips.defer(lambda pipe: pipe.echo("alone"), lambda replies, error: followed.append((replies, error)))
        print(sent, followed)
        gevent.sleep(0.05)
        print(sent, followed)
        """
    )
    assert printed.splitlines() == ["[] []", "[1] [([b'alone'], None)]"]


def test_a_call_that_waits_leads_the_next_round_trip_even_behind_deferred_ones():
    printed = under_gevent(
        """
        client.delete("rt:empty")
        followed = []
        first = gevent.spawn(trips.run, lambda pipe: pipe.blpop("rt:empty", 0.3))  # holds its round trip a while
        gevent.sleep(0.05)
        trips.defer(lambda pipe: pipe.echo("deferred"), lambda replies, error: followed.append(replies))
        waiting = gevent.spawn(trips.run, lambda pipe: pipe.echo("waiting"))
        print(first.get(timeout=5), waiting.get(timeout=5), followed, sent)
        """
    )
    assert printed == "[None] [b'waiting'] [[b'deferred']] [1, 2]"


def test_a_deferred_call_that_cannot_reach_redis_is_told():
    printed = under_gevent(
        f"""
        trips = Trips(redis.Redis(port={free_port()}, socket_connect_timeout=0.5))
        followed = []
        trips.defer(lambda pipe: pipe.ping(), lambda replies, error: followed.append((replies, type(error).__name__)))
        gevent.sleep(1)
        print(followed)
        """
    )
    assert printed == "[(None, 'ConnectionError')]"


def test_deferred_calls_still_queued_leave_when_the_process_exits():
    """A web worker told to stop right after an answer: the call's settling still reaches Redis."""
    client = cache.redis()
    client.delete("rt:at-exit")
    under_gevent(
        """
        from aura import cache

        cache.defer(client, lambda pipe: pipe.set("rt:at-exit", "settled"), lambda replies, error: None)
        sys.exit(0)  # before the event loop turns
        """
    )
    assert client.get("rt:at-exit") == b"settled"
    client.delete("rt:at-exit")


def test_a_deferred_call_behind_a_round_trip_under_way_at_exit_still_leaves():
    """The worker stops while another request's round trip is under way: the settling waits its turn."""
    client = cache.redis()
    client.delete("rt:at-exit", "rt:empty")
    printed = under_gevent(
        """
        from aura import cache

        gevent.spawn(cache.round_trip, client, lambda pipe: pipe.blpop("rt:empty", 0.25))
        gevent.sleep(0.05)
        cache.defer(client, lambda pipe: pipe.set("rt:at-exit", "settled"), lambda replies, error: print(replies, error))
        sys.exit(0)  # while the round trip is under way
        """
    )
    assert printed == "[True] None"
    assert client.get("rt:at-exit") == b"settled"
    client.delete("rt:at-exit")


def test_without_gevent_a_deferred_call_is_made_at_once():
    client = cache.redis()
    followed = []
    cache.defer(client, lambda pipe: pipe.echo("now"), lambda replies, error: followed.append((replies, error)))
    assert followed == [([b"now"], None)]


def test_without_gevent_a_deferred_call_behind_a_round_trip_leaves_when_it_ends():
    client = cache.redis()
    client.delete("rt:empty")
    followed = []
    first = threading.Thread(target=cache.round_trip, args=(client, lambda pipe: pipe.blpop("rt:empty", 0.3)))
    first.start()
    time.sleep(0.1)
    cache.defer(client, lambda pipe: pipe.echo("behind"), lambda replies, error: followed.append((replies, error)))
    assert followed == []  # the first call's round trip is under way
    first.join(5)
    assert followed == [([b"behind"], None)]


def test_a_process_serving_one_call_polls_for_its_reply_and_one_serving_more_does_not():
    """While a web worker serves one /v1 call and no other, nothing else needs its core: the call's
    round trip spins for its reply instead of sleeping until it comes. Serving two, or making a round
    trip nobody waits for (a settling), it leaves the core to the event loop."""
    printed = under_gevent(
        """
        from aura.cache import spinner

        spins = lambda: spinner.caught + spinner.missed
        spinner.call_started()
        print(trips.run(lambda pipe: pipe.echo("one")), spins())
        spinner.call_started()
        print(trips.run(lambda pipe: pipe.echo("two")), spins())
        spinner.call_ended()
        spinner.call_ended()
        trips.defer(lambda pipe: pipe.echo("settling"), lambda replies, error: print(replies, error))
        gevent.sleep(0.05)
        print(sent, spins())
        """,
        AURA_REDIS_SPIN_MICROSECONDS="10000",
    )
    assert printed.splitlines() == ["[b'one'] 1", "[b'two'] 1", "[b'settling'] None", "[1, 1, 1] 1"]


def test_a_redis_that_answers_after_the_spin_three_times_in_a_row_is_not_spun_for_a_while():
    client = cache.redis()
    client.delete("rt:empty")
    printed = under_gevent(
        """
        from aura.cache import spinner

        spinner.call_started()
        for _ in range(3):  # each answers after 50 ms, long after the spin gave up
            trips.run(lambda pipe: pipe.blpop("rt:empty", 0.05))
        print(spinner.caught, spinner.missed)
        print(trips.run(lambda pipe: pipe.echo("after")), spinner.caught, spinner.missed)
        """,
        AURA_REDIS_SPIN_MICROSECONDS="300",
    )
    assert printed.splitlines() == ["0 3", "[b'after'] 0 3"]


def test_no_spin_is_the_setting_off(monkeypatch):
    printed = under_gevent(
        """
        from aura.cache import spinner

        spinner.call_started()
        print(trips.run(lambda pipe: pipe.echo("one")), spinner.caught + spinner.missed)
        """,
        AURA_REDIS_SPIN_MICROSECONDS="0",
    )
    assert printed == "[b'one'] 0"
