"""The PKCS#11 operation (KMIP 2.1 section 6.1.37): PKCS#11 calls carried over KMIP.

The server answers as a Cryptoki library of its own. What it implements is the
library's housekeeping: C_Initialize opens a context and names it by a Correlation
Value, C_GetInfo describes the library (``LIBRARY_INFO``), C_Finalize closes the
context. Every other function (slots, sessions, objects, mechanisms) is answered
with CKR_FUNCTION_NOT_SUPPORTED: the KMIP operations themselves serve those needs,
and a token model over the key store would be a feature of its own.

A PKCS#11 failure is not a KMIP failure: the batch item succeeds and carries the
function's Return Code, as a library returns a CK_RV.

Contexts live in this process, like the multi-part operations of crypto_ops.py: a
client continues on the node where it called C_Initialize; elsewhere its Correlation
Value is unknown and the answer is CKR_CRYPTOKI_NOT_INITIALIZED. At most
``MAX_CONTEXTS`` are open; the oldest is dropped first.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

from ..payloads import PKCS11RequestPayload, PKCS11ResponsePayload
from ..tables import PKCS11Function, PKCS11ReturnCode
from .context import Context

# Contexts a client forgot to finalize hold a few bytes each; the bound keeps a
# careless or hostile client from growing the table without end.
MAX_CONTEXTS = 1024

# The Cryptoki version whose calling conventions the marshalled parameters follow
# (the KMIP 2.1 PKCS#11 profile's).
CRYPTOKI_VERSION = (2, 40)
MANUFACTURER = "keyquorum"
LIBRARY_DESCRIPTION = "keyquorum KMIP key server"
LIBRARY_VERSION = (0, 1)

# Open contexts by scope and Correlation Value: one tenant's value means nothing in
# another's scope.
_contexts: OrderedDict[tuple[str, bytes], None] = OrderedDict()


def library_info() -> bytes:
    """CK_INFO as the profile marshals it: versions as two bytes, the texts padded with
    spaces to 32 bytes, and the flags (none are defined) as a 64-bit CK_FLAGS."""
    return (bytes(CRYPTOKI_VERSION) + _padded(MANUFACTURER) + bytes(8)
            + _padded(LIBRARY_DESCRIPTION) + bytes(LIBRARY_VERSION))


def _padded(text: str) -> bytes:
    return text.encode("ascii").ljust(32, b" ")


async def pkcs11(ctx: Context, payload: PKCS11RequestPayload) -> PKCS11ResponsePayload:
    function = payload.pkcs11_function
    if function == PKCS11Function.C_INITIALIZE:
        correlation = secrets.token_bytes(16)
        _contexts[(ctx.scope, correlation)] = None
        while len(_contexts) > MAX_CONTEXTS:
            _contexts.popitem(last=False)
        return _answer(payload, PKCS11ReturnCode.OK, correlation=correlation)

    if function not in (PKCS11Function.C_GETINFO, PKCS11Function.C_FINALIZE):
        return _answer(payload, PKCS11ReturnCode.FUNCTION_NOT_SUPPORTED)
    named = payload.correlation_value
    if named is None or (ctx.scope, named) not in _contexts:
        return _answer(payload, PKCS11ReturnCode.CRYPTOKI_NOT_INITIALIZED)
    if function == PKCS11Function.C_GETINFO:
        return _answer(payload, PKCS11ReturnCode.OK, output=library_info())
    del _contexts[(ctx.scope, named)]
    return _answer(payload, PKCS11ReturnCode.OK)


def _answer(payload: PKCS11RequestPayload, code: PKCS11ReturnCode,
            correlation: bytes | None = None, output: bytes | None = None
            ) -> PKCS11ResponsePayload:
    return PKCS11ResponsePayload(pkcs11_interface=payload.pkcs11_interface,
                                 pkcs11_function=payload.pkcs11_function,
                                 correlation_value=correlation,
                                 pkcs11_output_parameters=output,
                                 pkcs11_return_code=code)
