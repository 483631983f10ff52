"""Endpoint administration: replacing an endpoint's AWS keys, deleting endpoints."""

from __future__ import annotations

import logging
from typing import Any

from ._config import ConnectionConfig
from ._endpoint import note_secrets_applied
from ._errors import ApiError, ConfigurationError, ConflictError
from ._retry import NO_RETRY, RetryPolicy
from ._secrets import Secret, to_secret
from ._transport import SyncTransport
from ._wire import (
    EndpointInfo,
    Request,
    decode_json,
    delete_endpoint,
    get_endpoint,
    parse_endpoints,
    put_endpoint,
    update_endpoint,
)

logger = logging.getLogger("es_inference.admin")

#: The first Elasticsearch version with the ``_update`` API.
UPDATE_API_VERSION = (8, 17)
# Settings Elasticsearch fills in itself and refuses on PUT.
_DERIVED_SETTINGS = ("dimensions",)


def _version(transport: SyncTransport) -> tuple[int, int]:
    body = transport.perform(Request("GET", "/"), RetryPolicy(), bytes)
    number = str(decode_json(body, "cluster info").get("version", {}).get("number", ""))
    try:
        major, minor = (int(part) for part in number.split(".")[:2])
    except ValueError:
        raise ConfigurationError(
            f"cannot read the Elasticsearch version from {number!r}"
        ) from None
    return major, minor


def _recreate_body(
    info: EndpointInfo, access: Secret, secret: Secret
) -> dict[str, Any]:
    settings = {
        key: value
        for key, value in info.service_settings.items()
        if key not in _DERIVED_SETTINGS
    }
    if "provider" in settings:
        settings["provider"] = str(settings["provider"]).lower()
    settings["access_key"] = access.get_secret_value()
    settings["secret_key"] = secret.get_secret_value()
    body: dict[str, Any] = {"service": info.service, "service_settings": settings}
    if info.task_settings:
        body["task_settings"] = dict(info.task_settings)
    if info.chunking_settings:
        body["chunking_settings"] = dict(info.chunking_settings)
    return body


def rotate_aws_keys(
    connection: ConnectionConfig,
    inference_id: str,
    aws_access_key_id: Any,
    aws_secret_access_key: Any,
    *,
    force: bool = False,
) -> str:
    """Replace the AWS keys of an ``amazonbedrock`` endpoint; old keys are not needed.

    Uses ``_update`` where the cluster has it (8.17+). Older clusters get the endpoint
    deleted and created again under the same id and settings; Elasticsearch refuses
    the delete (``ConflictError``) while ingest pipelines or ``semantic_text`` fields
    use the endpoint, unless ``force`` is true. Returns ``"updated"`` or
    ``"recreated"``. The new keys are never logged.

    Known limitation: on clusters without ``_update``, keys that Elasticsearch's
    validation call refuses leave the endpoint deleted (the old keys are not known
    here to restore it); the error then says so.
    """
    access = to_secret(aws_access_key_id)
    secret = to_secret(aws_secret_access_key)
    if access is None or secret is None:
        raise ConfigurationError("both a new access key and secret key are needed")
    transport = SyncTransport(connection, pool_size=1)
    try:
        info = parse_endpoints(
            transport.perform(get_endpoint(inference_id), RetryPolicy(), bytes)
        )[0]
        if info.service != "amazonbedrock":
            raise ConfigurationError(
                f"inference endpoint [{inference_id}] uses service [{info.service}], "
                "not amazonbedrock"
            )
        if _version(transport) >= UPDATE_API_VERSION:
            body = {
                "service_settings": {
                    "access_key": access.get_secret_value(),
                    "secret_key": secret.get_secret_value(),
                }
            }
            transport.perform(
                update_endpoint(info.task_type, inference_id, body), NO_RETRY, bytes
            )
            note_secrets_applied(
                inference_id, {"access_key": access, "secret_key": secret}
            )
            logger.info("replaced the AWS keys of [%s] with _update", inference_id)
            return "updated"

        try:
            transport.perform(
                delete_endpoint(inference_id, info.task_type, force=force),
                NO_RETRY,
                bytes,
            )
        except ConflictError as exc:
            raise ConflictError(
                exc.status,
                exc.error_type,
                f"{exc.reason} (this cluster has no _update API, so new keys mean "
                "deleting and recreating the endpoint; pass force=True, or --force "
                "to es-inference rotate-keys, to do so while it is in use)",
                caused_by=exc.caused_by,
                inference_id=inference_id,
            ) from None
        try:
            transport.perform(
                put_endpoint(
                    info.task_type,
                    inference_id,
                    _recreate_body(info, access, secret),
                    connection.server_timeout_param,
                ),
                NO_RETRY,
                bytes,
            )
        except ApiError as exc:
            # The old endpoint is gone and its keys are not known here: say so.
            logger.error(
                "inference endpoint [%s] was deleted but not created again",
                inference_id,
            )
            raise type(exc)(
                exc.status,
                exc.error_type,
                f"{exc.reason} (inference endpoint [{inference_id}] was deleted to "
                "replace its AWS keys and could not be created again with the new "
                "ones; create it again with working keys)",
                caused_by=exc.caused_by,
                inference_id=inference_id,
            ) from None
        note_secrets_applied(inference_id, {"access_key": access, "secret_key": secret})
        logger.info("recreated [%s] with new AWS keys", inference_id)
        return "recreated"
    finally:
        transport.close()
