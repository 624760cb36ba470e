"""LSPS2 service at run time (the LSP): JIT sessions driven by node events.

Sessions are persisted write-ahead in the datastore; the pending
`htlc_accepted` requests are answered later, when the channel is ready.
lightningd is reached only through `ClnNode` (lsps/node/rpc.py).
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

import lsps.lsps2.service as S
import lsps.quota as quota
from lsps.lsps0.msgs import LspsError
from lsps.lsps0.service import Dispatcher, MethodSpec, answer_later
from lsps.lsps2.listing import session_json, summary_row
from lsps.lsps2.msgs import (
    EXTRA_FEE_TLV,
    format_scid,
    parse_scid,
    parse_tlv_stream,
    serialize_tlv_stream,
    strip_length_prefix,
    tu64,
)
from lsps.lsps2.opening import JitOpening
from lsps.node.events import Htlc
from lsps.node.replies import htlc_continue, htlc_fail
from lsps.node.rpc import ClnNode
from lsps.node.store import Archive, Area, Store
from lsps.runtime.threads import arm_deadline, now_ms

SESSIONS = Area("lsps2-sessions")    # JIT sessions (lsps/lsps2/service.py)
# Finished sessions past valid_until, moved out of SESSIONS so start-up reads only
# what can still change; read on demand by the operator view.
SESSIONS_DONE = Area("lsps2-sessions-done")
SESSIONS_DONE_INDEX = Area("lsps2-sessions-done-days")   # day -> archived sessions to forget
# Channel opens in flight at once (one per peer); apart from request handling so
# stalled peers never hold up lsps2.buy.
MAX_OPENS = 16
# Unpaid JIT sessions one peer may hold at once (each is a stored record).
MAX_ACTIVE_SESSIONS_PER_PEER = 20
MAX_ACTIVE_SESSIONS_TOTAL = 10_000
# Finished sessions stay visible to the operator this long after valid_until.
SESSION_RETENTION_MS = 7 * 24 * 3600 * 1000

PRUNE_EVERY_MS = 3600 * 1000
ARCHIVE_MARGIN_BLOCKS = 6

Responder = Callable[[dict], None]


def _record(session: dict) -> dict:
    """What is stored of a session: no in-memory marks."""
    record = {k: v for k, v in session.items() if not k.startswith("_")}
    record["parts"] = [{k: v for k, v in p.items() if k != "replayed"}
                       for p in session["parts"]]
    return record


def _parts_expired(record: dict, height: int) -> bool:
    """Every HTLC it ever held is past its CLTV expiry (with a margin): lightningd can
    no longer replay one to us after a restart, so nothing is left to answer."""
    return all(p["cltv_expiry"] + ARCHIVE_MARGIN_BLOCKS <= height for p in record["parts"])


def _finished(session: dict) -> bool:
    """Nothing can happen to it any more: failed, or paid with its fees settled."""
    return session["state"] == S.FAILED or (
        session["state"] in (S.FORWARDING, S.DONE) and bool(session.get("fees_restored")))


class Lsps2Service(JitOpening):
    def __init__(self, node: ClnNode, store: Store, service: S.Service, dispatcher: Dispatcher,
                 schedule, is_connected: Callable[[str], bool],
                 log: Callable[[str, str], None]):
        self.node = node
        self.store = store
        self.core = service
        self.schedule = schedule
        self.is_connected = is_connected
        # LSPS5: wake(client) is True while an away client is being woken
        self.wake: Callable[[str], bool] = lambda peer_id: False
        self.wake_timeout_s = 60
        self.log = log
        self.lock = threading.RLock()
        self.sessions: Dict[str, dict] = {}          # scid string -> session
        # Indexes, so that no request, HTLC or event costs O(stored sessions):
        self.live: Dict[str, dict] = {}              # scid -> session not finished yet
        self.by_channel: Dict[str, str] = {}         # channel id (opened or opening) -> scid
        self.waiting: Dict[str, Responder] = {}      # part key -> hook responder
        self.ready_waiters: Dict[str, str] = {}      # channel_id -> scid
        self.funding: Dict[str, str] = {}            # client id -> scid of its open in flight
        self.queued: Dict[str, List[str]] = {}       # client id -> scids waiting to open
        # Channels another service owns (LSPS1 orders): never adopted.
        self.claimed_elsewhere: Callable[[str], bool] = lambda channel_id: False
        self._next_prune_ms = 0
        self.height = 0   # from block_added: nothing is archived before the first block
        self.archive = Archive(store, SESSIONS_DONE, SESSIONS_DONE_INDEX)
        self.archive.digest = summary_row
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="clnlsp-lsps2")
        self.openers = ThreadPoolExecutor(max_workers=MAX_OPENS,
                                          thread_name_prefix="clnlsp-lsps2-open")
        dispatcher.register(MethodSpec("lsps2.get_info", 2, self._get_info,
                                       optional=frozenset({"token"})))
        dispatcher.register(MethodSpec("lsps2.buy", 2, self._buy,
                                       required=frozenset({"opening_fee_params"}),
                                       optional=frozenset({"payment_size_msat"})))

    # --- start-up ------------------------------------------------------------
    def start(self) -> None:
        """Persisted parts stay until lightningd replays them or their CLTV margin
        fails them (on_block); an open cut short by the restart resumes at once,
        adopting the channel it made or the one it recorded, never funding twice."""
        loaded = self.store.list(SESSIONS)
        with self.lock:
            self.sessions.update(loaded)
            for session in loaded.values():
                self._index(session)
            self._prune()
            for session in list(self.live.values()):
                self._arm_deadline(session)
                if session["state"] == S.OPENING and self.is_connected(session["client_id"]):
                    self._start_open(session)  # else when the client connects

    # --- LSPS2 methods -----------------------------------------------------------
    def _get_info(self, call) -> dict:
        return {"opening_fee_params_menu": self.core.menu(call.peer_id, now_ms(),
                                                          call.params.get("token"))}

    def _buy(self, call):
        # Checking liquidity and persisting need RPC round trips: off the loop.
        return answer_later(self.workers.submit, call, self._do_buy, self.log)

    def _do_buy(self, client_id: str, params: dict) -> dict:
        channels = self.node.channels()
        with self.lock:
            active: Dict[str, int] = {}
            for s in self.live.values():
                if s["state"] in (S.WAITING, S.COLLECTING, S.OPENING) and \
                        s["valid_until_ms"] > now_ms():
                    active[s["client_id"]] = active.get(s["client_id"], 0) + 1
        why = quota.refusal(active, client_id, MAX_ACTIVE_SESSIONS_PER_PEER,
                            MAX_ACTIVE_SESSIONS_TOTAL, {c["peer_id"] for c in channels})
        if why:
            raise LspsError(1, f"client rejected: {why} (unpaid JIT channel purchases)")
        inbound = sum(c["receivable_msat"] for c in channels
                      if c["state"] == "CHANNELD_NORMAL" and c["peer_connected"])
        fee_params, size, fee = self.core.check_buy(
            client_id, params["opening_fee_params"], params.get("payment_size_msat"),
            now_ms(), inbound if params.get("payment_size_msat") is not None else None)
        scid = self._new_scid()
        session = S.new_session(scid, client_id, fee_params, size, fee, now_ms())
        with self.lock:
            self.sessions[scid] = session
            self._persist(session)
            self._arm_deadline(session)
        self.log(f"lsps2: JIT session {scid} for {client_id} "
                 f"({'size ' + str(size) if size is not None else 'no-MPP'})", "info")
        return {"jit_channel_scid": scid,
                "lsp_cltv_expiry_delta": self.core.policy.cltv_expiry_delta,
                "client_trusts_lsp": False}

    def _new_scid(self) -> str:
        """Random, in block heights no chain will reach soon, and unlike any
        real scid or alias of ours or an existing session."""
        taken = {parse_scid(s) for c in self.node.channels() for s in c["scids"]}
        while True:
            block = 10_000_000 + secrets.randbelow(6_000_000)
            scid = block << 40 | secrets.randbelow(1 << 24) << 16 | secrets.randbelow(1 << 16)
            with self.lock:
                fresh = scid not in taken and format_scid(scid) not in self.sessions
            if fresh and self.archive.get(format_scid(scid)) is None:
                return format_scid(scid)

    def claims(self, channel_id: str) -> bool:
        """Is this channel a JIT session's (opened, or being opened)?"""
        with self.lock:
            return channel_id in self.by_channel

    # --- HTLCs ------------------------------------------------------------------
    def owns(self, scid: Optional[str]) -> bool:
        with self.lock:
            return scid is not None and scid in self.sessions

    def on_htlc(self, htlc: Htlc, respond: Responder) -> None:
        """An HTLC whose next hop is one of our jit scids."""
        scid, key = htlc.next_scid, htlc.key
        part = {"key": key, "payment_hash": htlc.payment_hash, "amount_msat": htlc.amount_msat,
                "forward_msat": htlc.forward_msat, "outgoing_cltv": htlc.outgoing_cltv,
                "cltv_expiry": htlc.cltv_expiry, "height": htlc.height,
                "blinded": htlc.blinded, "payload": htlc.payload}
        policy = self.core.policy
        with self.lock:
            session = self.sessions[scid]
            self.waiting[key] = respond
            client = session["client_id"]
            connected = self.is_connected(client)
            decision = S.on_htlc(session, part, now_ms(), connected,
                                 policy.cltv_expiry_delta, policy.htlc_expiry_margin)
            if decision.why:
                self.log(f"lsps2: HTLC {key} to {scid} refused: {decision.why}", "info")
            self._apply(session, decision)
        if not connected and key in decision.hold and self.wake(client):
            # held for a client that is away and being woken (LSPS5): it has the wake
            # timeout to come back
            with self.lock:
                self._apply(session, S.on_woken(session, now_ms(), self.wake_timeout_s * 1000))

    def on_connect(self, peer_id: str) -> None:
        with self.lock:
            for session in list(self.live.values()):
                if session["client_id"] != peer_id:
                    continue
                if session["state"] == S.OPENING and peer_id not in self.funding:
                    self._start_open(session)  # an open cut short by a restart
                else:
                    self._apply(session, S.on_client_connected(session, now_ms()))

    def on_block(self, height: int) -> None:
        with self.lock:
            self.height = height
            for session in list(self.live.values()):
                self._apply(session, S.on_block(session, height,
                                                self.core.policy.htlc_expiry_margin, now_ms()))

    def on_channel_state(self, channel_id: str, new_state: str) -> None:
        if new_state != "CHANNELD_NORMAL":
            return
        with self.lock:
            scid = self.ready_waiters.pop(channel_id, None)
        if scid is not None:
            self.workers.submit(self._channel_ready, scid, channel_id)

    def on_forward_event(self, scid_out: Optional[str], in_channel: Optional[str],
                         in_htlc_id: Optional[int], status: str) -> None:
        """forward_event: a fee-bearing part settled (the purchase is paid) or
        failed downstream (the fee is still owed by the next payment)."""
        if status not in ("settled", "failed", "local_failed") or in_channel is None \
                or in_htlc_id is None:
            return
        key = S.part_key(in_channel, in_htlc_id)
        with self.lock:
            for session in list(self.live.values()):
                if S.on_part_resolved(session, key, status == "settled", now_ms()):
                    self._persist(session)
                    self._arm_deadline(session)

    # --- decisions ----------------------------------------------------------
    def _apply(self, session: dict, d: S.Decision) -> None:
        """Carry out a decision. Caller holds the lock. Persist first: an
        answer given before its record is written could be repeated."""
        if d.changed:
            self._persist(session)
        for key, code in d.fail.items():
            self._answer(key, htlc_fail(code))
        for key, (amount, fee) in d.forward.items():
            self._answer(key, self._forward_result(session, key, amount, fee))
        if d.open:
            self._start_open(session)
        self._arm_deadline(session)

    def _answer(self, key: str, result: dict) -> None:
        respond = self.waiting.pop(key, None)
        if respond is not None:
            respond(result)

    def _forward_result(self, session: dict, key: str, amount: int, fee: int) -> dict:
        part = next((p for p in session["parts"] if p["key"] == key), None)
        payload_hex = part["payload"] if part else None
        if payload_hex is None or (part and part.get("blinded")):
            # A blinded part is forwarded as lightningd decrypted it (its relay
            # already took the fee); its payload cannot be rewritten.
            return htlc_continue(forward_to=session["channel_id"])
        records = parse_tlv_stream(strip_length_prefix(bytes.fromhex(payload_hex)))
        records[2] = tu64(amount)
        extra = serialize_tlv_stream({EXTRA_FEE_TLV: fee.to_bytes(8, "big")}) if fee else None
        return htlc_continue(payload=serialize_tlv_stream(records).hex(),
                             forward_to=session["channel_id"],
                             extra_tlvs=extra.hex() if extra else None)

    # --- deadlines --------------------------------------------------------------
    def _arm_deadline(self, session: dict) -> None:
        state = session["state"]
        if state == S.COLLECTING and session["first_part_ms"] is not None:
            at = S.deadline_ms(session)
        elif state == S.WAITING or (state in (S.FORWARDING, S.DONE) and session["channel_id"]
                                    and not session.get("fees_restored")):
            at = session["valid_until_ms"]
        else:
            return
        scid = session["scid"]
        arm_deadline(self.schedule, session, at, now_ms(), lambda: self._tick(scid))

    def _tick(self, scid: str) -> None:
        with self.lock:
            session = self.sessions.get(scid)
            if session is None:
                return
            session.pop("_armed_at", None)
            self._apply(session, S.on_tick(session, now_ms()))
            self._prune()
            restore = (session["state"] in (S.FORWARDING, S.DONE) and session["channel_id"]
                       and now_ms() >= session["valid_until_ms"]
                       and not session.get("fees_restored"))
        if restore:
            # The jit scid has expired: the channel is an ordinary one now.
            try:
                self.node.set_channel_fee(session["channel_id"], *self.node.default_channel_fee())
            except Exception as e:
                self.log(f"lsps2: could not restore fees on {session['channel_id']}: {e!r}",
                         "warn")
                return
            with self.lock:
                session["fees_restored"] = True
                self._persist(session)

    def _prune(self) -> None:
        """At most once an hour, on a worker: finished sessions past valid_until move
        to the archive (an HTLC to their scid fails either way), and archived ones past
        the retention are forgotten."""
        if now_ms() < self._next_prune_ms:
            return
        self._next_prune_ms = now_ms() + PRUNE_EVERY_MS
        self.workers.submit(self._archive)

    def _archive(self) -> None:
        now = now_ms()
        with self.lock:
            done = [s for s in self.sessions.values()
                    if _finished(s) and s["valid_until_ms"] <= now
                    and _parts_expired(s, self.height) and s["client_id"] not in self.funding]
        for session in done:   # archive first: a crash in between leaves both copies
            self.archive.put(session["scid"], _record(session),
                             session["valid_until_ms"] + SESSION_RETENTION_MS)
            self.store.delete(SESSIONS, session["scid"])
            with self.lock:
                self.sessions.pop(session["scid"], None)
                self.live.pop(session["scid"], None)
        self.archive.forget_due(
            now, lambda session: session["valid_until_ms"] + SESSION_RETENTION_MS <= now)

    def _index(self, session: dict) -> None:
        """Keep the indexes right after a session changed. Caller holds the lock."""
        scid = session["scid"]
        if session["state"] == S.FAILED:   # the rest stay live until archived
            self.live.pop(scid, None)
        else:
            self.live[scid] = session
        for channel in (session["channel_id"], session.get("opening_channel_id")):
            if channel:
                self.by_channel[channel] = scid

    def _persist(self, session: dict) -> None:
        self._index(session)
        self.store.put(SESSIONS, session["scid"], _record(session))

    # --- operator view -------------------------------------------------------------
    def list_sessions(self, peer_id: Optional[str], scid: Optional[str]) -> List[dict]:
        archived = self.archive.find(scid)
        with self.lock:
            out = []
            for s in list(self.sessions.values()) + [
                    a for k, a in archived.items() if k not in self.sessions]:
                if peer_id and s["client_id"] != peer_id or scid and s["scid"] != scid:
                    continue
                out.append(session_json(s))
            return out

    def summary_rows(self) -> List[dict]:
        """What lsp-summary adds up, of the sessions lsps2-service-sessions lists: the
        archive's from rows kept up to date (not listed again at each call)."""
        archived = self.archive.digests()
        with self.lock:
            live = {scid: summary_row(s) for scid, s in self.sessions.items()}
        return list(live.values()) + [r for k, r in archived.items() if k not in live]
