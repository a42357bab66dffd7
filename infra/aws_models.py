"""`make models`: trimmed copies of botocore's DynamoDB, SQS and SSM models, and of its endpoints.json, for
adapters/aws.py.

A client parses its service's whole model when it is made: SSM's is ~950 KB of JSON for 154
operations, of which the bridge calls 3. Each copy keeps the operations below, every shape their
input, output and errors reach, and the model's metadata; no documentation. It records the botocore
version and the API version it was cut from: a client uses it only with that botocore, else botocore's
own file (tests/unit/test_aws_clients.py fails, saying to run `make models`, when a copy is stale).

endpoints.json (1.25 MB: every service's endpoints in every partition), which a botocore session reads for its
first client, is cut the same way: every partition kept whole (its regions, defaults, DNS suffixes and
variants), its `services` cut to the three above, the only ones a bridge client resolves an endpoint for (a
worker's, the API's and the CLI's: traced). The loader reads botocore's whole file only when another service is
asked for (an STS client its credentials need, say)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "chalicelib" / "adapters" / "aws_models"

OPERATIONS = {
    # Every operation PynamoDB's connection can issue (its dispatch calls), and DescribeEndpoints,
    # botocore's endpoint discovery (kept, so a client behaves as one with the full model would).
    "dynamodb": ("BatchGetItem", "BatchWriteItem", "CreateTable", "DeleteItem", "DeleteTable", "DescribeEndpoints",
                 "DescribeTable", "GetItem", "ListTables", "PutItem", "Query", "Scan", "TransactGetItems",
                 "TransactWriteItems", "UpdateItem", "UpdateTable", "UpdateTimeToLive"),
    # adapters/queue.py
    "sqs": ("ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "DeleteMessage", "DeleteMessageBatch",
            "GetQueueAttributes", "ReceiveMessage", "SendMessage", "SendMessageBatch"),
    # adapters/secrets.py
    "ssm": ("DeleteParameter", "GetParameter", "PutParameter"),
}


def _undocumented(node: dict) -> dict:
    return {k: v for k, v in node.items() if k != "documentation"}


def trim(model: dict, operations: tuple[str, ...]) -> dict:
    """`model` with only `operations` and the shapes they reach, without documentation."""
    shapes, kept = model["shapes"], {}

    def walk(name: str) -> None:
        if name in kept:
            return
        shape = kept[name] = _undocumented(shapes[name])
        if "members" in shape:
            shape["members"] = {k: _undocumented(m) for k, m in shape["members"].items()}
        for ref in (*(shape[k] for k in ("member", "key", "value") if k in shape), *shape.get("members", {}).values()):
            walk(ref["shape"])

    ops = {}
    for name in operations:
        op = ops[name] = _undocumented(model["operations"][name])
        for ref in (*(op[k] for k in ("input", "output") if k in op), *op.get("errors", ())):
            walk(ref["shape"])
        if "errors" in op:
            op["errors"] = [_undocumented(e) for e in op["errors"]]
    return {**{k: v for k, v in model.items() if k not in ("documentation", "operations", "shapes")},
            "operations": ops, "shapes": {k: kept[k] for k in shapes if k in kept}}


def trim_endpoints(endpoints: dict, services: tuple[str, ...]) -> dict:
    """botocore's endpoints.json with each partition whole but for its services: only `services`."""
    return {**endpoints, "partitions": [{**p, "services": {s: p["services"][s] for s in services if s in p["services"]}}
                                        for p in endpoints["partitions"]]}


def generate() -> dict[str, str]:
    """Each trimmed file's text (by name: each service's, and "endpoints"), cut from the installed botocore's."""
    import botocore
    from botocore.loaders import Loader

    # botocore's own files only (not a model the developer added to ~/.aws/models).
    loader, texts = Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False), {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_data(f"{service}/{version}/service-2")
        texts[service] = json.dumps({"botocore": botocore.__version__, "api_version": version,
                                     "model": trim(model, operations)}, separators=(",", ":")) + "\n"
    texts["endpoints"] = json.dumps({"botocore": botocore.__version__,
                                     "endpoints": trim_endpoints(loader.load_data("endpoints"), tuple(OPERATIONS))},
                                    separators=(",", ":")) + "\n"
    return texts


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for service, text in generate().items():
        path = OUT / f"{service}.json"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(OUT.parents[2])} ({len(text) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
