"""Set Endpoint Role (KMIP 2.0): which end of this connection is the server.

A client may ask the server to stay the server (acknowledged) or to become the
client of the connection, so that the other end can send it requests such as Notify
and Put over the same TLS session. keyquorum does not reverse a connection: it sends
Notify and Put itself, from the leader to endpoints an operator registered
(cluster/notify.py). Asking for the Client role is therefore refused as a feature
this server does not have; nothing about the connection changes either way.
"""

from __future__ import annotations

from ..errors import KmipError, invalid_field
from ..payloads import SetEndpointRoleRequestPayload, SetEndpointRoleResponsePayload
from ..tables import EndpointRole, ResultReason
from .context import Context


async def set_endpoint_role(
    ctx: Context, payload: SetEndpointRoleRequestPayload
) -> SetEndpointRoleResponsePayload:
    if payload.endpoint_role == EndpointRole.SERVER:
        return SetEndpointRoleResponsePayload(endpoint_role=EndpointRole.SERVER)
    if payload.endpoint_role == EndpointRole.CLIENT:
        raise KmipError(ResultReason.FEATURE_NOT_SUPPORTED,
                        "this server does not act as the client of a connection; "
                        "Notify and Put reach registered endpoints instead")
    raise invalid_field("Endpoint Role must be Client or Server")
