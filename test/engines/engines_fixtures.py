"""Shared helpers for the engine tests (a plain module, not a conftest, so
it cannot collide with other test folders' conftest modules).

The real bundled model is used throughout: engines are measurement code and a
mock would only test the mock.  Long prompts are built from robot tool specs
because that is the prefix the agent really repeats on every call.
"""
from __future__ import annotations

from typing import Any

#: a BFCL-style tool call: {"name": ..., "arguments": {...}}
TOOL_CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["move_to", "grasp", "stop"]},
        "arguments": {
            "type": "object",
            "properties": {
                "target": {"type": "string", "maxLength": 24},
                # enum, not minimum/maximum: llama-cpp-python's JSON-schema
                # converter does not translate numeric bounds into the grammar
                "speed": {"type": "string", "enum": ["slow", "normal", "fast"]},
            },
            "required": ["target", "speed"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}

_VERBS = [
    "move_to", "rotate", "grasp", "release", "look_at", "navigate_to", "scan_area",
    "report_status", "set_speed", "dock", "undock", "take_photo",
]


def tool_specs(n: int = 7) -> list[dict[str, Any]]:
    """OpenAI-style tool specs; 7 of them render to ~1,000 Gemma tokens."""
    specs = []
    for verb in _VERBS[:n]:
        words = verb.replace("_", " ")
        specs.append({
            "type": "function",
            "function": {
                "name": verb,
                "description": (
                    f"Ask the robot to {words}. Use this when the operator requests to {words}; "
                    "the call returns a status string and may take several seconds to complete "
                    "on the real hardware."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string", "description": "Name of the target object, place or person for this action."},
                        "speed": {"type": "number", "description": "Speed in meters per second, between 0.1 and 1.5."},
                        "timeout_s": {"type": "integer", "description": "Give up after this many seconds."},
                    },
                    "required": ["target"],
                },
            },
        })
    return specs


SYSTEM = {"role": "system", "content": "You control a mobile manipulator robot. Answer with one tool call."}


