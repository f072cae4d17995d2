"""Checks pulsebase's OpenAPI document (tests/openapi.rs runs this).

  validate.py spec FILE      FILE is the document: openapi-spec-validator
                             must find it a valid OpenAPI 3.1 document.
  validate.py answers FILE   FILE is {"document": ..., "answers": [{"method",
                             "path", "status", "body"}, ...]}: each body must
                             match the schema the document gives for that
                             operation and status. Objects that list their
                             properties and say nothing of others are read
                             as closed, so an answer field the document
                             lacks fails too.

Prints one line per problem and exits 1 if there was any.
"""

import copy
import json
import sys

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate


def combined(node, found):
    """Names of the schemas that `allOf` combines: they stay open."""
    if isinstance(node, dict):
        for part in node.get("allOf", []):
            ref = part.get("$ref", "")
            if ref.startswith("#/components/schemas/"):
                found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            combined(value, found)
    elif isinstance(node, list):
        for value in node:
            combined(value, found)
    return found


def closed(node, open_here=False):
    """Objects with `properties` and no `additionalProperties` get `false`,
    except the parts of an `allOf`, which each see only some fields."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node and not open_here:
            node["additionalProperties"] = False
        for key, value in node.items():
            if key == "allOf":
                for part in value:
                    closed(part, True)
            else:
                closed(value)
    elif isinstance(node, list):
        for value in node:
            closed(value)


def close_components(components):
    keep_open = combined(components, set())
    for name, schema in components.get("schemas", {}).items():
        closed(schema, name in keep_open)


def check_answers(payload):
    document = copy.deepcopy(payload["document"])
    close_components(document["components"])
    problems = []
    for answer in payload["answers"]:
        where = f'{answer["method"].upper()} {answer["path"]} {answer["status"]}'
        operation = document["paths"].get(answer["path"], {}).get(answer["method"])
        if operation is None:
            problems.append(f"{where}: no such operation in the document")
            continue
        responses = operation["responses"]
        response = responses.get(str(answer["status"]), responses.get("default"))
        if response is None:
            problems.append(f"{where}: the status is not documented")
            continue
        content = response.get("content", {}).get("application/json")
        if content is None:
            problems.append(f"{where}: no application/json schema documented")
            continue
        schema = dict(content["schema"], components=document["components"])
        errors = sorted(OAS31Validator(schema).iter_errors(answer["body"]), key=str)
        for error in errors:
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: at /{path}: {error.message}")
    return problems


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if mode == "spec":
        try:
            validate(payload)
            problems = []
        except Exception as e:  # the validator's errors have no common base
            # The message may quote the whole document: its head says what.
            problems = [f"invalid OpenAPI document: {str(e)[:2000]}"]
    else:
        problems = check_answers(payload)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


main()
