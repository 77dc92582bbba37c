"""`GET /v1/sys/certify-ca`: the certificate of the cluster's Certify issuing CA, as PEM.

KMIP Certify signs with this CA when a client names no issuer of its own
(kmip/operations/certificate_ops.py). Its certificate is public, as a CA
certificate is meant to be: a relying party needs it to check what Certify issued,
and an operator who wants Certify's certificates to be KMIP credentials imports it
as a CA. So, like Vault's `pki/ca/pem`, it is served without a token; its private
key is never served by anything.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Response

from keyquorum.kmip.operations.certificate_ops import ISSUING_CERTIFICATE_UID
from keyquorum.kmip.tables import Tag
from keyquorum.kmip.ttlv import decode_item

from .admin_api import AdminBackend, ApiError
from .seal import SealedError
from .state import ISSUING_SCOPE


def certify_ca_router(backend: AdminBackend) -> APIRouter:
    router = APIRouter(prefix="/v1/sys", tags=["sys"])

    @router.get("/certify-ca", response_class=Response)
    async def certify_ca() -> Response:
        await backend.barrier()
        obj = backend.state.keys.get(ISSUING_SCOPE, ISSUING_CERTIFICATE_UID)
        if obj is None or obj.material is None:
            raise ApiError(404, "the cluster has not certified anything yet: its issuing CA "
                                "is made by the first KMIP Certify that names no issuer")
        try:
            plain = backend.seal.decrypt(
                obj.material, f"object/{ISSUING_SCOPE}/{ISSUING_CERTIFICATE_UID}".encode())
        except SealedError:
            raise ApiError(503, "this node is sealed: unseal it, or ask another node") from None
        value = next(c.value for c in decode_item(plain).value if c.tag == Tag.CERTIFICATE_VALUE)
        pem = x509.load_der_x509_certificate(value).public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")

    return router
