import threading
import time

from lsps.runtime.threads import FairSender, TimerService


def test_timer_runs_in_order_and_cancel_works():
    timer = TimerService()
    fired = []
    done = threading.Event()
    timer.schedule(0.05, lambda: fired.append("b"))
    cancel = timer.schedule(0.02, lambda: fired.append("cancelled"))
    timer.schedule(0.01, lambda: fired.append("a"))
    timer.schedule(0.08, done.set)
    cancel()
    assert done.wait(5)
    timer.stop()
    assert fired == ["a", "b"]


def test_timer_survives_failing_callback():
    logs = []
    timer = TimerService(log=lambda m, lvl: logs.append(m))
    done = threading.Event()
    timer.schedule(0, lambda: 1 / 0)
    timer.schedule(0.01, done.set)
    assert done.wait(5)
    timer.stop()
    assert "ZeroDivisionError" in logs[0]


def test_fair_sender_round_robin_and_flood_isolation():
    gate = threading.Event()
    order = []

    def transmit(peer, payload):
        gate.wait(5)
        order.append(peer)

    sender = FairSender(transmit, workers=1, per_peer_queue=4)
    for _i in range(10):  # flooder: only 4 fit (plus the one in flight)
        sender.send("flooder", b"x")
    sender.send("victim", b"y")
    gate.set()
    deadline = time.time() + 5
    while len(order) < 6 and time.time() < deadline:
        time.sleep(0.01)
    sender.stop()
    assert "victim" in order[:3]  # not behind the whole flood
    assert order.count("flooder") <= 5
    assert sender.dropped >= 5


def test_fair_sender_reports_errors():
    errors = []
    done = threading.Event()

    def transmit(peer, payload):
        raise RuntimeError("Peer is not connected")

    sender = FairSender(transmit)
    sender.send("p", b"x", lambda reason: (errors.append(reason), done.set()))
    assert done.wait(5)
    sender.stop()
    assert errors == ["Peer is not connected"]


def test_fair_sender_keeps_per_peer_order():
    got = []
    done = threading.Event()

    def transmit(peer, payload):
        got.append(payload)
        if len(got) == 20:
            done.set()

    sender = FairSender(transmit, workers=2, per_peer_queue=100)
    for i in range(20):
        sender.send("p", bytes([i]))
    assert done.wait(5)
    sender.stop()
    assert got == [bytes([i]) for i in range(20)]
