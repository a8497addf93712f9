"""JSON Schema through the real validator (jsonschema, draft 2020-12), remembered per schema.

Checking a schema against the metaschema costs about 2.5 ms; agents send the same tools on every turn, so
both the check and the compiled validator are kept per schema text (least recently used go).
"""

from __future__ import annotations

from functools import lru_cache

from jsonschema import Draft202012Validator, SchemaError

from . import fastjson

ENTRIES = 1024


def schema_problem(schema: dict) -> str | None:
    """Why `schema` is not a valid JSON Schema, or None."""
    return _problem(fastjson.dumpb(schema, sort_keys=True))


def validator(schema: dict) -> Draft202012Validator:
    return _validator(fastjson.dumpb(schema, sort_keys=True))


@lru_cache(maxsize=ENTRIES)
def _problem(text: bytes) -> str | None:
    try:
        Draft202012Validator.check_schema(fastjson.loads(text))
    except SchemaError as exc:
        return exc.message[:200]
    except RecursionError:
        return "nested too deeply"
    return None


@lru_cache(maxsize=ENTRIES)
def _validator(text: bytes) -> Draft202012Validator:
    return Draft202012Validator(fastjson.loads(text))
