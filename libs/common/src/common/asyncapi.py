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

from common.contracts import ALL_CONTRACTS, Contract, PredictRequest
from common.envelope import TYPE_PREFIX, CloudEvent
from common.topology import Topology

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
