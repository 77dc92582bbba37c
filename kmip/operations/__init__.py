"""Operation handlers, one per KMIP operation this server implements.

Each handler is ``async def handler(ctx: Context, payload) -> response payload``;
``HANDLERS`` maps the Operation to it. An operation missing here is answered with
Operation Not Supported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..tables import Operation
from . import undo
from .attribute_ops import (
    add_attribute,
    adjust_attribute,
    delete_attribute,
    get_attribute_list,
    get_attributes,
    modify_attribute,
    set_attribute,
)
from .certificate_ops import certify, recertify, validate
from .context import Backend, Context
from .crypto_ops import (
    decrypt,
    encrypt,
    hash_data,
    mac,
    mac_verify,
    rng_retrieve,
    rng_seed,
    sign,
    signature_verify,
)
from .derive_ops import derive_key
from .endpoint_ops import set_endpoint_role
from .keypair_ops import create_key_pair
from .lifecycle_ops import archive, get_usage_allocation, obtain_lease, recover
from .object_ops import activate, create, destroy, get, locate, register, revoke
from .pkcs11_ops import pkcs11
from .rekey_ops import rekey, rekey_key_pair
from .server_ops import SUPPORTED_VERSIONS, discover_versions, query
from .session_ops import cancel, check, interop, log_message, poll
from .split_key_ops import create_split_key, join_split_key
from .transfer_ops import export, import_object

Handler = Callable[[Context, Any], Awaitable[Any]]

HANDLERS: dict[Operation, Handler] = {
    Operation.ARCHIVE: archive,
    Operation.RECOVER: recover,
    Operation.OBTAIN_LEASE: obtain_lease,
    Operation.GET_USAGE_ALLOCATION: get_usage_allocation,
    Operation.SET_ATTRIBUTE: set_attribute,
    Operation.ADJUST_ATTRIBUTE: adjust_attribute,
    Operation.IMPORT: import_object,
    Operation.EXPORT: export,
    Operation.PKCS_11: pkcs11,
    Operation.SET_ENDPOINT_ROLE: set_endpoint_role,
    Operation.DISCOVER_VERSIONS: discover_versions,
    Operation.QUERY: query,
    Operation.CREATE: create,
    Operation.REGISTER: register,
    Operation.GET: get,
    Operation.GET_ATTRIBUTES: get_attributes,
    Operation.GET_ATTRIBUTE_LIST: get_attribute_list,
    Operation.ADD_ATTRIBUTE: add_attribute,
    Operation.MODIFY_ATTRIBUTE: modify_attribute,
    Operation.DELETE_ATTRIBUTE: delete_attribute,
    Operation.ACTIVATE: activate,
    Operation.REVOKE: revoke,
    Operation.DESTROY: destroy,
    Operation.LOCATE: locate,
    Operation.ENCRYPT: encrypt,
    Operation.DECRYPT: decrypt,
    Operation.SIGN: sign,
    Operation.SIGNATURE_VERIFY: signature_verify,
    Operation.MAC: mac,
    Operation.MAC_VERIFY: mac_verify,
    Operation.HASH: hash_data,
    Operation.RNG_RETRIEVE: rng_retrieve,
    Operation.RNG_SEED: rng_seed,
    Operation.CHECK: check,
    Operation.POLL: poll,
    Operation.CANCEL: cancel,
    Operation.INTEROP: interop,
    Operation.LOG: log_message,
    Operation.CREATE_KEY_PAIR: create_key_pair,
    Operation.RE_KEY: rekey,
    Operation.RE_KEY_KEY_PAIR: rekey_key_pair,
    Operation.DERIVE_KEY: derive_key,
    Operation.CERTIFY: certify,
    Operation.RE_CERTIFY: recertify,
    Operation.VALIDATE: validate,
    Operation.CREATE_SPLIT_KEY: create_split_key,
    Operation.JOIN_SPLIT_KEY: join_split_key,
}

# Operations that change state: the ones an Undo batch would have to roll back.
WRITES = frozenset({
    Operation.CREATE_SPLIT_KEY,
    Operation.JOIN_SPLIT_KEY,
    Operation.ARCHIVE,
    Operation.RECOVER,
    Operation.GET_USAGE_ALLOCATION,
    Operation.SET_ATTRIBUTE,
    Operation.ADJUST_ATTRIBUTE,
    Operation.IMPORT,
    # Export clears Fresh, as Get does.
    Operation.EXPORT,
    Operation.CREATE,
    Operation.CREATE_KEY_PAIR,
    Operation.REGISTER,
    Operation.ADD_ATTRIBUTE,
    Operation.MODIFY_ATTRIBUTE,
    Operation.DELETE_ATTRIBUTE,
    Operation.ACTIVATE,
    Operation.REVOKE,
    Operation.DESTROY,
    Operation.RE_KEY,
    Operation.RE_KEY_KEY_PAIR,
    Operation.DERIVE_KEY,
    Operation.CERTIFY,
    Operation.RE_CERTIFY,
})

__all__ = ["HANDLERS", "SUPPORTED_VERSIONS", "WRITES", "Backend", "Context", "Handler", "undo"]
