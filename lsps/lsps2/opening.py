"""Opening a JIT channel at run time (mixed into Lsps2Service): one open per client
at a time, the open marked before it starts and the channel recorded after, adopted
after a restart, given up at its deadline; then waiting for the channel to be usable.
"""

from __future__ import annotations

from typing import Optional

import lsps.lsps2.service as S
from lsps.node.rpc import FundingError
from lsps.runtime.threads import now_ms


class JitOpening:
    """Needs Lsps2Service's state: sessions, lock, node, workers, openers."""

    def _start_open(self, session: dict) -> None:
        """Caller holds the lock. A session funds at most one channel: once funded
        it is reused (after an open timeout, a CLTV failure or a restart); one open
        per peer at a time, on the open pool."""
        scid, client = session["scid"], session["client_id"]
        funded = session["channel_id"] or session.get("opening_channel_id")
        if funded:
            self.openers.submit(self._await_ready, scid, funded)
            return
        if client in self.funding:
            if scid != self.funding[client] and scid not in self.queued.get(client, []):
                self.queued.setdefault(client, []).append(scid)
            return
        self.funding[client] = scid
        self.openers.submit(self._open, scid)

    def _adopt(self, session: dict) -> Optional[str]:
        """A channel an open of this session made before it was cut short: opened
        by us to the client after the open was marked, and nobody else's."""
        pre = set(session.get("pre_channels") or [])
        for c in self.node.channels(session["client_id"]):
            if c["channel_id"] in pre or c["opener"] != "local" or c["state"] not in (
                    "CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL"):
                continue
            if self.claims(c["channel_id"]) or self.claimed_elsewhere(c["channel_id"]):
                continue
            self.log(f"lsps2: {session['scid']} adopts channel {c['channel_id']}", "info")
            txid = (c.get("funding_outpoint") or ":").split(":")[0]
            session.update(channel_sat=c.get("capacity_sat"),
                           funding_fee_sat=self.node.funding_fee_sat(txid) if txid else None)
            return c["channel_id"]
        return None

    def _open(self, scid: str) -> None:
        with self.lock:
            session = self.sessions[scid]
            client = session["client_id"]
        channel_id = None
        try:
            if session["state"] != S.OPENING:
                return
            if session.get("pre_channels") is None:
                # Write-ahead: the open is marked before it starts.
                pre = [c["channel_id"] for c in self.node.channels(client)]
                with self.lock:
                    session["pre_channels"] = pre
                    self._persist(session)
            else:
                channel_id = self._adopt(session)
            if channel_id is None:
                channel_id = self._fund(session)
            if channel_id is None:
                return
        finally:
            self._open_done(client)
        self._await_ready(scid, channel_id)

    def _fund(self, session: dict) -> Optional[str]:
        """fundchannel with a deadline: a peer that never answers is cut off when
        it passes, which frees its wallet inputs and this worker."""
        scid, client = session["scid"], session["client_id"]
        # Sized from the purchase, never from an onion value.
        if session["payment_size_msat"] is not None:
            size = session["payment_size_msat"]
        else:
            size = sum(S.counted_msat(p) for p in session["parts"])
        amount_sat = max(self.core.policy.min_channel_sat, (size // 1000) * 2 + 10_000)
        self.schedule(self.core.policy.open_timeout_s, lambda: self._open_deadline(scid, client))
        started_ms = now_ms()
        try:
            # Zero-conf, unannounced, scid-alias (bLIP-52).
            funded = self.node.fund_channel(client, amount_sat, announce=False, mindepth=0)
            channel_id = funded["channel_id"]
        except FundingError as e:
            self.log(f"lsps2: opening for {scid} failed: {e}", "warn")
            with self.lock:
                self._apply(session, S.on_open_failed(session, e.refused_by_peer, str(e),
                                                      now_ms()))
            return None
        except Exception as e:
            self.log(f"lsps2: opening for {scid} failed: {e!r}", "warn")
            with self.lock:
                self._apply(session, S.on_open_failed(session, False, repr(e), now_ms()))
            return None
        with self.lock:
            session["opening_channel_id"] = channel_id
            # What lsp-summary reports of the open (figures only: nothing acts on them).
            session.update(open_started_ms=started_ms, channel_sat=amount_sat)
            self._persist(session)
        fee_sat = self.node.funding_fee_sat(funded["funding_outpoint"].split(":")[0])
        with self.lock:
            session["funding_fee_sat"] = fee_sat
            self._persist(session)
        return channel_id

    def _open_deadline(self, scid: str, client: str) -> None:
        with self.lock:
            session = self.sessions.get(scid)
            stalled = self.funding.get(client) == scid and session is not None and \
                not session.get("opening_channel_id")
        if stalled:
            self.log(f"lsps2: open for {scid} to {client} passed its deadline: cancelled",
                     "warn")
            self.node.cancel_open(client)

    def _open_done(self, client: str) -> None:
        """The peer's open is over: start the next session of that peer waiting."""
        with self.lock:
            self.funding.pop(client, None)
            queue = self.queued.get(client) or []
            while queue:
                session = self.sessions.get(queue.pop(0))
                if session is not None and session["state"] == S.OPENING:
                    self._start_open(session)
                    break
            if not queue:
                self.queued.pop(client, None)

    def _await_ready(self, scid: str, channel_id: str) -> None:
        with self.lock:
            session = self.sessions[scid]
            if session.get("opening_channel_id") != channel_id:
                session["opening_channel_id"] = channel_id
                self._persist(session)
            self.ready_waiters[channel_id] = scid
        # The state may have changed before we started listening.
        for c in self.node.channels():
            if c["channel_id"] == channel_id and c["state"] == "CHANNELD_NORMAL":
                self.on_channel_state(channel_id, "CHANNELD_NORMAL")
                break
        self.schedule(self.core.policy.open_timeout_s,
                      lambda: self._ready_timeout(scid, channel_id))

    def _ready_timeout(self, scid: str, channel_id: str) -> None:
        with self.lock:
            if self.ready_waiters.pop(channel_id, None) is None:
                return
            session = self.sessions[scid]
            self._apply(session, S.on_open_failed(
                session, False, "channel not ready in time", now_ms()))

    def _channel_ready(self, scid: str, channel_id: str) -> None:
        minimum = next((c["htlc_minimum_msat"] for c in self.node.channels()
                        if c["channel_id"] == channel_id), 1)
        # The invoice's route hint promises 0/0 on this hop, and lightningd
        # checks forwarding fees even on parts we forward at cost: zero them
        # until valid_until (the session's deadline restores the defaults).
        try:
            self.node.set_channel_fee(channel_id, 0, 0)
        except Exception as e:
            self.log(f"lsps2: could not zero fees on {channel_id}: {e!r}", "warn")
        with self.lock:
            session = self.sessions[scid]
            self._apply(session, S.on_channel_ready(session, channel_id, max(minimum, 1),
                                                    now_ms()))
