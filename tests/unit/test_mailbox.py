"""The onion-message mailbox's bounds and order, without a node."""
from bolt12ext.mailbox import Limits, Mailbox


def test_bounds_ttl_and_order():
    box = Mailbox(Limits(per_peer=2, total=3, ttl_s=100))
    assert box.admit("a", 0) == ([], None)
    box.add("k2", "a", "pk", "p2", 5)
    box.add("k1", "a", "pk", "p1", 0)
    assert box.admit("a", 10) == ([], "mailbox full for this peer")
    assert box.admit("b", 10) == ([], None)
    box.add("k3", "b", "pk", "p3", 10)
    assert box.admit("c", 10) == ([], "mailbox full")
    # at t=100 the first message has expired and makes room
    assert box.admit("c", 100) == (["k1"], None)
    assert box.count() == 2 and box.count("a") == 1
    box.add("k4", "a", "pk", "p4", 50)
    deliver, expired = box.take("a", 105)
    assert [k for k, _ in deliver] == ["k4"] and expired == ["k2"]  # stored at 5, gone at 105
    assert box.count("a") == 0 and box.count() == 1


def test_take_keeps_arrival_order():
    box = Mailbox()
    for i, t in enumerate((30, 10, 20)):
        box.add(f"k{i}", "p", "pk", f"m{i}", t)
    deliver, expired = box.take("p", 40)
    assert [r["packet"] for _, r in deliver] == ["m1", "m2", "m0"] and expired == []
    assert box.take("p", 40) == ([], [])
