"""The OpenAPI document clients generate code from: each model under a name of its own, fields as answered."""

import collections
import importlib
import inspect

import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.django_db

SCHEMA_MODULES = ["agent.schemas", "audio.schemas", "providers.schemas"]


async def test_documented_attempts_carry_what_each_endpoint_answers(http):
    doc = (await http.get("/openapi.json")).json()
    components = doc["components"]["schemas"]

    def attempt_fields(model: str) -> set[str]:
        reference = components[model]["properties"]["attempts"]["items"]["$ref"]
        return set(components[reference.rsplit("/", 1)[-1]]["properties"])

    common = {"provider_uid", "model", "status", "error", "error_type", "latency_ms", "skipped_events"}
    assert attempt_fields("RunOut") == common | {"tools"}  # the MCP tools each attempt ran
    assert attempt_fields("TranscriptOut") == common


def test_no_two_models_share_a_name():
    # OpenAPI components are named after classes: two models of one name would be documented as one.
    found = collections.defaultdict(set)
    for module in map(importlib.import_module, SCHEMA_MODULES):
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.model_fields:
                found[cls.__name__].add(f"{cls.__module__}.{cls.__qualname__}")
    assert {name: places for name, places in found.items() if len(places) > 1} == {}
