"""Calling a Dash callback in a test as if one of its inputs had fired."""

from __future__ import annotations

from contextvars import copy_context


def in_callback(fn, *args, trigger: str | None = None):
    """Call a Dash callback as if ``trigger`` (``"id.prop"``) had fired (none: first call)."""
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    def run():
        context_value.set(AttributeDict(triggered_inputs=[{"prop_id": trigger, "value": 1}] if trigger else []))
        return fn(*args)

    return copy_context().run(run)
