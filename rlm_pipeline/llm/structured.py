"""Structured (JSON) output: prompt prefix, reply parsing and schema validation."""

from __future__ import annotations

STRUCTURED_PROMPT_PREFIX = "Reply with only a JSON object that matches this JSON Schema: "
