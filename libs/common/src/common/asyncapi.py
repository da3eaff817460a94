"""The AsyncAPI 2.6 document of prelabel's messages, generated from the contracts.

One channel per contract: the exchange it travels on plus its routing key
(``dataset.events/item.created.v1``). Events are ``subscribe`` operations (a
client receives what a service published), commands are ``publish`` operations
(a client sends them to the owning service), so an upload client in any language
can publish ``ingest_item.v1`` or consume item events from this document alone.
Every payload is the CloudEvents envelope whose ``data`` is the contract, exactly
as :func:`common.messaging.parse_event` validates it.

    python -m common.asyncapi > asyncapi.json
"""

from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic.json_schema import models_json_schema

from common.contracts import ALL_CONTRACTS, Contract, IngestItem, PredictRequest
from common.envelope import TYPE_PREFIX, CloudEvent
from common.topology import DATASET, DEAD_LETTER_REASON_HEADER, Topology

ASYNCAPI_VERSION = "2.6.0"
AMQP_BINDING_VERSION = "0.2.0"
SCHEMA_REF = "#/components/schemas/{model}"

_PRODUCER_DESCRIPTIONS = {
    "dataset": "Projects, datasets, items, item blobs and DQL queries.",
    "trigger_router": "Triggers, pipelines, the executions ledger and the autoscaler.",
    "model_serving": "Model catalog, model services, Triton lifecycle and predict workers.",
    "annotation": "Annotations, labeling tasks and review.",
    "billing": "Budgets, runtime meters and usage reports.",
}


INGEST_LIMITS: dict[str, int] = {
    "metadata_bytes": 64 * 1024,
    "metadata_depth": 32,
    "name_characters": 255,
    "s3_key_bytes": 1024,
    "object_bytes_default": 50 * 1024 * 1024,
}
"""The dataset service's limits on an ingest command (its domain rules; a unit test
keeps the two equal). ``object_bytes_default``: ``DATASET_MAX_UPLOAD_BYTES``'s default."""


def ingest_rules(topology: Topology) -> dict[str, Any]:
    """What the document states about ``ingest_item`` beyond its schema: how a command
    proves its project, which keys it may name, the limits (checked before any work),
    and where a refused command goes."""
    limits = INGEST_LIMITS
    queue = topology.queue(DATASET, "on_ingest_item")
    return {
        "projectProof": (
            "Every command carries data.api_key, a project API key (the one HTTP clients "
            "send as 'Authorization: Bearer'). The service checks it against the stored "
            "hash exactly like an HTTP key, and the dataset must belong to that key's "
            "project. No key or an unknown key: dead-lettered ('no api_key', 'not a valid "
            "project API key'); another project's dataset: dead-lettered as 'dataset ... "
            "not found'. Dead letters hold the body as sent, key included: the dead letter "
            "queue is for operators only."
        ),
        "s3Key": (
            "data.s3_key names an object in the service's bucket (the dataset service's "
            "DATASET_S3_BUCKET, 'prelabel' by default) and is used as it is, never resolved: "
            "relative (no leading '/'), '/'-separated without empty, '.' or '..' segments, "
            "no backslash or control character, Unicode NFC, at most "
            f"{limits['s3_key_bytes']} bytes. Anything else is dead-lettered; no key can "
            "name another bucket."
        ),
        "limits": {
            **limits,
            "description": (
                "Checked before any work: the object's size by a HEAD before it is read "
                "(at most the dataset service's DATASET_MAX_UPLOAD_BYTES, default "
                f"{limits['object_bytes_default']}); data.metadata a JSON object at most "
                f"{limits['metadata_depth']} levels deep and {limits['metadata_bytes']} bytes "
                f"as compact JSON; data.name at most {limits['name_characters']} characters "
                "once directory parts and control characters are removed (refused, never "
                "cut); data.dir at most 32 levels, each at most "
                f"{limits['name_characters']} characters, '.' and '..' segments dropped."
            ),
        },
        "idempotency": (
            "The envelope id is the command id: a redelivery with the same id and the same "
            "data registers nothing new; the same id with other data (dataset, s3_key, name, "
            "dir or metadata) is dead-lettered as 'already used with different data'."
        ),
        "unknownVersions": (
            f"The intake queue {queue} is bound with 'ingest_item.*': a command sent with "
            "a routing key or envelope type of a version this service does not read is "
            "dead-lettered with 'unknown version' instead of being dropped by the exchange."
        ),
        "deadLetters": {
            "exchange": topology.dead_letter_exchange(DATASET),
            "queue": f"{queue}.dlq",
            "reasonHeader": DEAD_LETTER_REASON_HEADER,
        },
    }


@dataclass(frozen=True)
class ChannelSpec:
    """Where one contract travels on the broker."""

    name: str
    """AsyncAPI channel name: ``<exchange>/<routing key>``."""
    exchange: str
    """Exchange the message is published to."""
    exchange_type: str
    """``topic`` or ``direct``."""
    routing_key: str
    """Routing key it is published with (may be a ``{parameter}``)."""
    parameters: dict[str, str]
    """Channel parameters and their descriptions."""


def channel_of(contract: type[Contract], topology: Topology) -> ChannelSpec:
    """The exchange and routing key ``contract`` is published with.

    Events go to their producer's topic exchange and commands to their owner's,
    both keyed by the contract's routing key. Predict requests are the exception
    the topology defines: they go to the direct exchange ``model_serving.predict``
    keyed by the model service id, so each service's work queue gets only its own.
    """
    if contract is PredictRequest:
        return ChannelSpec(
            name=f"{topology.predict_exchange}/{{service_id}}",
            exchange=topology.predict_exchange,
            exchange_type="direct",
            routing_key="{service_id}",
            parameters={"service_id": "Model service id; its work queue is predict.<service_id>."},
        )
    if contract.kind == "command":
        exchange = topology.commands_exchange(contract.producer)
    else:
        exchange = topology.events_exchange(contract.producer)
    return ChannelSpec(
        name=f"{exchange}/{contract.routing_key}",
        exchange=exchange,
        exchange_type="topic",
        routing_key=contract.routing_key,
        parameters={},
    )


def _doc(obj: type) -> str:
    return inspect.getdoc(obj) or ""


def _summary(obj: type) -> str:
    return _doc(obj).split("\n\n", 1)[0].replace("\n", " ")


def _operation_id(contract: type[Contract]) -> str:
    verb = "send" if contract.kind == "command" else "receive"
    return f"{verb}_{contract.routing_key.replace('.', '_')}"


def _package_version() -> str:
    try:
        return version("prelabel-common")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0.0.0"


def build_document(topology: Topology | None = None) -> dict[str, Any]:
    """The AsyncAPI 2.6 document of every contract in ``ALL_CONTRACTS``."""
    topology = topology or Topology()
    envelopes = {c: CloudEvent[c] for c in ALL_CONTRACTS}  # type: ignore[valid-type]
    refs, definitions = models_json_schema(
        [(e, "validation") for e in envelopes.values()], ref_template=SCHEMA_REF
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})

    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for contract, envelope in envelopes.items():
        ref = refs[(envelope, "validation")]
        envelope_name = ref["$ref"].rsplit("/", 1)[-1]
        # Consumers dispatch on ``type``: an envelope of this message has exactly one.
        envelope_type = schemas[envelope_name]["properties"]["type"]
        envelope_type["const"] = TYPE_PREFIX + contract.routing_key

        spec = channel_of(contract, topology)
        message_name = contract.__name__
        messages[message_name] = {
            "messageId": contract.routing_key,
            "name": contract.routing_key,
            "title": message_name,
            "summary": _summary(contract),
            "description": _doc(contract),
            "contentType": "application/json",
            "correlationId": {
                "description": "The execution id, once there is one.",
                "location": "$message.payload#/correlationid",
            },
            "payload": ref,
            "bindings": {
                "amqp": {
                    "messageType": contract.routing_key,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-kind": contract.kind,
            "x-cloudevents-type": TYPE_PREFIX + contract.routing_key,
        }
        operation: dict[str, Any] = {
            "operationId": _operation_id(contract),
            "summary": _summary(contract),
            "tags": [{"name": contract.producer}],
            "bindings": {
                "amqp": {
                    # Persistent messages; consumers ack only after their effect committed.
                    "deliveryMode": 2,
                    **({} if contract.kind == "command" else {"ack": True}),
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "message": {"$ref": f"#/components/messages/{message_name}"},
        }
        channel: dict[str, Any] = {
            "description": f"{contract.kind.capitalize()} {contract.routing_key} on the "
            f"{spec.exchange_type} exchange {spec.exchange}.",
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": spec.exchange,
                        "type": spec.exchange_type,
                        "durable": True,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            ("publish" if contract.kind == "command" else "subscribe"): operation,
            "x-producer": contract.producer,
            "x-routing-key": spec.routing_key,
        }
        if contract is IngestItem:
            rules = ingest_rules(topology)
            channel["x-prelabel-ingest"] = rules
            channel["description"] += (
                " "
                + rules["projectProof"]
                + " "
                + rules["s3Key"]
                + " "
                + rules["limits"]["description"]
            )
        if spec.parameters:
            channel["parameters"] = {
                name: {"description": text, "schema": {"type": "string", "minLength": 1}}
                for name, text in spec.parameters.items()
            }
        channels[spec.name] = channel

    producers = sorted({c.producer for c in ALL_CONTRACTS})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:prelabel:messages",
        "info": {
            "title": "prelabel messages",
            "version": _package_version(),
            "description": (
                "Events and commands of the prelabel services on RabbitMQ. Every message "
                "is a CloudEvents 1.0 JSON envelope whose type is 'prelabel.' plus the "
                "routing key and whose data is the contract. Adding an optional field "
                "keeps a version; a breaking change is a new .vN key published beside "
                "the old one. Delivery is at least once: consumers deduplicate on the "
                "envelope id."
            ),
        },
        "servers": {
            "rabbitmq": {
                "url": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ broker every service connects to.",
                "variables": {"host": {"default": "localhost"}, "port": {"default": "5672"}},
            }
        },
        "defaultContentType": "application/json",
        "tags": [{"name": p, "description": _PRODUCER_DESCRIPTIONS.get(p, p)} for p in producers],
        "channels": channels,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


def render(document: dict[str, Any]) -> str:
    """The document as stable, diff-friendly JSON text (with a final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Write the document to standard output."""
    sys.stdout.write(render(build_document()))


if __name__ == "__main__":
    main()
