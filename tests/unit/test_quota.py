from lsps.quota import refusal


def test_per_peer_and_total():
    assert refusal({}, "a", 2, 10, set()) is None
    assert "this peer" in refusal({"a": 2}, "a", 2, 10, set())
    assert "all peers" in refusal({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}, "f", 2, 10, {"f"})


def test_fifty_fresh_node_ids_do_not_lock_out_a_channel_peer():
    counts = {}
    refused = 0
    for i in range(50):
        peer = f"fresh{i}"
        if refusal(counts, peer, 20, 100, {"customer"}) is None:
            counts[peer] = counts.get(peer, 0) + 1
        else:
            refused += 1
    # strangers filled their half and were then refused; the customer still gets in
    assert sum(counts.values()) == 50 and refused == 0
    for i in range(50, 60):
        assert refusal(counts, f"fresh{i}", 20, 100, {"customer"}) is not None
    for _ in range(20):
        assert refusal(counts, "customer", 20, 100, {"customer"}) is None
        counts["customer"] = counts.get("customer", 0) + 1
    assert "this peer" in refusal(counts, "customer", 20, 100, {"customer"})
