"""The bundled demo: a small support agent whose steps are protocol work.

Five step types an agent runs all day -- route a request, extract fields into a Pydantic
model, call one of several tools, decline a request no tool serves, and write a SQL query
over the shop's own database -- over fifteen bundled inputs (``inputs.jsonl``).
``modelladder demo`` runs them through the ladder. The database is built in memory from the
bundled ``orders.sql``; the SQL step's contract reads its schema from that connection and asks
it to ``EXPLAIN`` every query (never runs it).
"""

from __future__ import annotations

import importlib.resources
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from modelladder.contracts import Choice, JsonSchema, Sql, ToolCalls, grounded_arguments
from modelladder.ladder import Step

__all__ = ["DemoInput", "ORDERS_DB", "STEPS", "TOOLS", "Ticket", "load_inputs", "orders_db"]


def orders_db() -> sqlite3.Connection:
    """The demo shop's database, in memory, from the bundled ``orders.sql``."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)  # the ladder may run in a worker thread
    conn.executescript(importlib.resources.files("modelladder.demo").joinpath("orders.sql").read_text())
    return conn


ORDERS_DB = orders_db()


class Ticket(BaseModel):
    """Fields a support agent needs from a customer's message."""

    customer_name: str = Field(description="the customer's full name")
    order_id: str = Field(pattern=r"^[A-Z]{2}-\d{4}$", description="order number like AB-1234")
    issue: Literal["damaged", "late", "wrong_item", "refund"]
    quantity: int = Field(ge=1, le=100)


TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "city name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "track_order",
            "description": "Look up the delivery status of an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "order number like AB-1234"}},
                "required": ["order_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_currency",
            "description": "Convert an amount of money from one currency to another.",
            "parameters": {
                "type": "object",
                "properties": {
                    "amount": {"type": "number"},
                    "from_currency": {"type": "string", "description": "ISO code, e.g. USD"},
                    "to_currency": {"type": "string", "description": "ISO code, e.g. EUR"},
                },
                "required": ["amount", "from_currency", "to_currency"],
            },
        },
    },
]

STEPS: dict[str, Step] = {
    "route": Step(
        "route",
        Choice(["billing", "technical", "shipping", "other"]),
        system="Classify the customer's request into one department. Answer with the department name only.",
        max_tokens=8,
    ),
    "extract": Step(
        "extract",
        JsonSchema(Ticket, checks=(grounded_arguments(skip=("issue",)),)),
        system="Extract the support ticket fields from the customer's message.",
        max_tokens=96,
    ),
    "call_tool": Step(
        "call_tool",
        # Grounding catches the classic small-model failure: a plausible value that the
        # user never said (currency codes and units are normalised, so they are exempt).
        ToolCalls(TOOLS, checks=(grounded_arguments(skip=("unit", "from_currency", "to_currency")),)),
        max_tokens=96,
    ),
    "maybe_call": Step(
        "maybe_call",
        ToolCalls(
            TOOLS,
            allow_no_call=True,
            checks=(grounded_arguments(skip=("unit", "from_currency", "to_currency")),),
        ),
        max_tokens=96,
    ),
    "query_orders": Step(
        "query_orders",
        Sql(None, connection=ORDERS_DB, explain=True, max_rows=20),
        system="Write the SQLite query that answers the question about the shop's orders.",
        max_tokens=160,
    ),
}


@dataclass(frozen=True)
class DemoInput:
    step: str
    messages: list[dict[str, Any]]
    note: str = ""


def load_inputs() -> list[DemoInput]:
    text = importlib.resources.files("modelladder.demo").joinpath("inputs.jsonl").read_text()
    return [DemoInput(**json.loads(line)) for line in text.splitlines() if line.strip()]
