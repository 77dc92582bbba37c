"""The seal's admin endpoints under ``/v1/sys/``: init, unseal, seal, status, rotate, rekey
(step by step), snapshots; and the Raft membership changes, ``raft/join`` and
``raft/remove-peer`` (root token).

As in Vault, some calls need no token: ``seal-status`` and ``rekey/init`` (GET) tell
nothing secret, ``unseal`` and ``rekey/update`` are authenticated by the shares
themselves, and ``init`` works once, on a cluster that holds nothing yet, and returns
the root token. Everything else needs a root token (``X-Keyquorum-Token`` or
``Authorization: Bearer``), checked as the tenancy API checks it
(cluster/admin_api.py). Errors are ``{"errors": ["..."]}``.

Shares and root tokens appear in responses only; never in a log line.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import asyncio
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from .admin_api import AdminBackend, ApiError, _Body, _presented_token, hash_token
from .barrier import BarrierError, RestoreState, SealKind
from .raft import MembershipChangeError, ReplicationError
from .rekey import Rekey, RekeyStatus
from .seal import Seal, SealedError, SealStatus, UnsealError
from .snapshot import SnapshotError, open_snapshot, seal_snapshot
from .tenancy import AdminToken, CreateToken, Done, Refused, TokenAccessor, TokenKind

log = logging.getLogger("keyquorum.api.sys")

# A snapshot upload above this is refused before it is read whole.
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024


class InitBody(_Body):
    key_shares: int = Field(ge=1, le=255)
    key_threshold: int = Field(ge=1, le=255)


class UnsealBody(_Body):
    key: str | None = Field(default=None, max_length=1024)
    # Forget the shares given so far.
    reset: bool = False


class MemberBody(_Body):
    # The member's Raft address, host:port, as in [raft] listen of its node.toml.
    address: str = Field(min_length=3, max_length=300, pattern=r"^[^\s:]+:[0-9]{1,5}$")


class RekeyInitBody(_Body):
    # The new split.
    key_shares: int = Field(ge=1, le=255)
    key_threshold: int = Field(ge=1, le=255)


class RekeyUpdateBody(_Body):
    # One current share, and the nonce of the attempt it is for.
    key: str = Field(max_length=1024)
    nonce: str = Field(max_length=64)


def _status(status: SealStatus) -> dict[str, Any]:
    answer = asdict(status)
    answer["progress_text"] = f"{status.progress} of {status.threshold}"
    return answer


def _rekey_status(status: RekeyStatus) -> dict[str, Any]:
    answer = asdict(status)
    answer["complete"] = False
    answer["progress_text"] = f"{status.progress} of {status.required}"
    return answer


def sys_router(backend: AdminBackend, seal: Seal) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["sys"])
    rekey = Rekey(seal)
    tenancy = backend.state.tenancy
    barrier = backend.state.barrier

    async def root_caller(request: Request) -> str:
        """The accessor of a root token; 401/403 otherwise."""
        token = _presented_token(request)
        configured = backend.config.api.admin_token
        if configured is not None and hmac.compare_digest(token.encode(), configured.encode()):
            return "root"
        found = tenancy.token_by_hash(hash_token(token))
        if found is None:
            await backend.barrier()
            found = tenancy.token_by_hash(hash_token(token))
        if found is None or found.kind != TokenKind.ROOT:
            raise ApiError(403, "the seal endpoints need a root token")
        return str(found.accessor)

    Root = Annotated[str, Depends(root_caller)]

    async def commit(command: object) -> Done:
        outcome = await backend.submit(command)
        if isinstance(outcome, Refused):
            raise ApiError(409, outcome.message)
        if not isinstance(outcome, Done):
            raise ApiError(500, "the command was not applied")
        return outcome

    @router.get("/seal-status")
    def seal_status() -> dict[str, Any]:
        return _status(seal.status())

    @router.post("/init")
    async def init(body: InitBody) -> dict[str, Any]:
        """Draw the root key and keyring; answer the shares and a root token, once."""
        if body.key_threshold > body.key_shares:
            raise ApiError(400, "key_threshold cannot exceed key_shares")
        await backend.barrier()
        try:
            made = await asyncio.to_thread(seal.prepare_init, SealKind.SHAMIR,
                                           body.key_shares, body.key_threshold)
        except UnsealError as error:
            raise ApiError(409, str(error)) from None
        await commit(made.command)
        seal.unseal_with_root(made.keyring.root_key)

        # The root token: only its hash is replicated, as for every admin token.
        token = "kq." + secrets.token_urlsafe(32)
        accessor = TokenAccessor(uuid.uuid4().hex[:24])
        await commit(CreateToken(AdminToken(accessor, hash_token(token), TokenKind.ROOT,
                                            display_name="root (operator init)",
                                            created_at=int(time.time()))))
        log.info("cluster_initialized shares=%d threshold=%d", body.key_shares,
                 body.key_threshold)
        return {"keys": list(made.shares), "root_token": token, "root_token_accessor": accessor}

    @router.post("/unseal")
    async def unseal(body: UnsealBody) -> dict[str, Any]:
        """One share towards the threshold; with none, an auto-unseal node tries its source."""
        if body.reset:
            seal.reset_progress()
            return _status(seal.status())
        try:
            if body.key is None:
                if seal.auto is None:
                    raise ApiError(400, "give one unseal share in key")
                await asyncio.to_thread(seal.unseal_automatically)
                return _status(seal.status())
            return _status(seal.unseal(body.key))
        except UnsealError as error:
            raise ApiError(400, str(error)) from None

    @router.post("/seal")
    async def seal_node(who: Root) -> dict[str, Any]:
        seal.seal(held=True)
        log.warning("node_sealed_by_operator by=%s", who)
        return _status(seal.status())

    @router.post("/rotate")
    async def rotate(who: Root) -> dict[str, Any]:
        """A new keyring term for new writes; every older term still opens."""
        await backend.barrier()
        try:
            command = seal.prepare_rotation()
        except (UnsealError, SealedError) as error:
            raise ApiError(409, str(error)) from None
        done = await commit(command)
        log.info("keyring_rotated keyring_version=%s by=%s", done.value, who)
        return {"keyring_version": done.value}

    # Raft membership, one member at a time (cluster/raft.py, hazard 9).

    @router.post("/raft/join")
    async def raft_join(body: MemberBody, who: Root) -> dict[str, Any]:
        """Add the node at this Raft address; it was started with the current members."""
        if body.address in backend.log.members():
            raise ApiError(409, f"{body.address} is already a member")
        await change_membership("add", body.address)
        log.info("raft_member_joined address=%s by=%s", body.address, who)
        return {"members": backend.log.members()}

    @router.post("/raft/remove-peer")
    async def raft_remove_peer(body: MemberBody, who: Root) -> dict[str, Any]:
        """Remove the member at this Raft address; it no longer counts for the quorum."""
        status = backend.log.status()
        if body.address not in backend.log.members():
            raise ApiError(404, f"{body.address} is not a member; see keyquorum operator "
                                "raft list-peers")
        if body.address == status.node_address:
            raise ApiError(409, "a node cannot remove itself: ask another node")
        if body.address == status.leader_address:
            raise ApiError(409, f"{body.address} is the leader: stop it first (another "
                                "member takes over), then remove it")
        await change_membership("remove", body.address)
        log.info("raft_member_removed address=%s by=%s", body.address, who)
        return {"members": backend.log.members()}

    async def change_membership(change: Literal["add", "remove"], address: str) -> None:
        try:
            await backend.log.change_membership(change, address)
        except MembershipChangeError as error:
            raise ApiError(409, str(error)) from None
        except ReplicationError:
            raise ApiError(503, "the change did not commit in time (no quorum, or timed "
                                "out); check keyquorum operator raft list-peers, and "
                                "retry if it is not in effect") from None

    # Rekey, step by step (cluster/rekey.py). As in Vault, starting and cancelling take
    # a root token; a holder hands in a share with the attempt's nonce and no token.

    @router.get("/rekey/init")
    def rekey_status() -> dict[str, Any]:
        return _rekey_status(rekey.status())

    @router.post("/rekey/init")
    async def rekey_start(body: RekeyInitBody, who: Root) -> dict[str, Any]:
        if body.key_threshold > body.key_shares:
            raise ApiError(400, "key_threshold cannot exceed key_shares")
        await backend.barrier()
        try:
            started = rekey.start(body.key_shares, body.key_threshold)
        except UnsealError as error:
            raise ApiError(409, str(error)) from None
        log.info("rekey_started_by by=%s", who)
        return _rekey_status(started)

    @router.delete("/rekey/init")
    async def rekey_cancel(who: Root) -> dict[str, Any]:
        rekey.cancel()
        log.info("rekey_cancelled_by by=%s", who)
        return _rekey_status(rekey.status())

    @router.post("/rekey/update")
    async def rekey_update(body: RekeyUpdateBody) -> dict[str, Any]:
        """One current share; the one that completes the attempt gets the new shares."""
        await backend.barrier()
        try:
            outcome = await asyncio.to_thread(rekey.give, body.key, body.nonce)
        except SealedError as error:
            raise ApiError(409, str(error)) from None
        except UnsealError as error:
            raise ApiError(400, str(error)) from None
        if isinstance(outcome, RekeyStatus):
            return _rekey_status(outcome)

        await commit(outcome.command)
        rekey.finish(outcome.nonce)
        new_seal = outcome.command.record.seal
        log.info("unseal_shares_rekeyed shares=%d threshold=%d", new_seal.shares,
                 new_seal.threshold)
        return {"complete": True, "keys": list(outcome.shares),
                "key_shares": new_seal.shares, "key_threshold": new_seal.threshold}

    @router.get("/snapshot")
    async def save_snapshot(who: Root) -> Response:
        """The whole state, encrypted under the keyring; opens only with the unseal keys."""
        await backend.barrier()
        try:
            data = seal_snapshot(backend.state.snapshot(), barrier.record, seal.keyring())
        except SealedError as error:
            raise ApiError(409, str(error)) from None
        except SnapshotError as error:
            raise ApiError(409, str(error)) from None
        log.info("snapshot_saved bytes=%d by=%s", len(data), who)
        return Response(data, media_type="application/octet-stream")

    @router.post("/snapshot/restore")
    async def restore_snapshot(request: Request, who: Root) -> dict[str, Any]:
        """Replace the whole state with a snapshot; the keys header holds its unseal keys."""
        data = await _read_limited(request)
        keys = [key.strip() for key in request.headers.get("X-Keyquorum-Unseal-Keys",
                                                           "").split(",") if key.strip()]
        try:
            opened = await asyncio.to_thread(open_snapshot, data, keys)
        except SnapshotError as error:
            raise ApiError(400, str(error)) from None
        done = await commit(RestoreState(opened.state))
        try:
            seal.unseal_with_root(opened.root_key)
        except (UnsealError, BarrierError):
            raise ApiError(500, "restored, but the snapshot's keyring did not open") from None
        log.warning("snapshot_restored objects=%s by=%s", done.value, who)
        return {"restored": True, "objects": done.value}

    return router


async def _read_limited(request: Request) -> bytes:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_SNAPSHOT_BYTES:
            raise ApiError(413, f"a snapshot over {MAX_SNAPSHOT_BYTES} bytes is refused")
    return bytes(received)

