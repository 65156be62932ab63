"""Owned objects (bill lines, journal-entry lines...) are written through their owner.

Intacct has no endpoint of its own for most lines: a line is created, changed or deleted by a
PATCH of its owner whose owned list carries it (``ia::operation: delete`` for a delete). One
request carries up to 500 owners, each with its lines; every line gets its owner's outcome.
The back-reference a line names its owner by is :attr:`ObjectInfo.owner_reference`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from intacct_api.mutate_plan import PreparedItem, Task
from intacct_api.mutate_results import ItemResult
from intacct_api.mutate_send import Outcomes, RequestSender

if TYPE_CHECKING:
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = ["run_lines"]


def run_lines(
    sender: RequestSender, registry: SpecRegistry, info: ObjectInfo, task: Task
) -> Outcomes:
    """PATCH the owners: one element per owner carrying its lines (<= 500 owners)."""
    assert info.owner is not None
    back_ref = info.owner_reference
    assert back_ref is not None
    owner_info = registry.object(info.owner)
    list_prop = next(
        (prop for prop, owned in owner_info.owned_lists.items() if owned == info.name),
        "lines",
    )
    by_owner: dict[str, list[PreparedItem]] = {}
    for prepared in task.items:
        by_owner.setdefault(str(prepared.match_value), []).append(prepared)
    owners = [
        PreparedItem(
            pos=-1 - i,
            source=f"{info.owner} {owner_key}",
            body={"key": owner_key, list_prop: [p.body for p in lines]},
            key=owner_key,
        )
        for i, (owner_key, lines) in enumerate(by_owner.items())
    ]
    sent = sender.send(owner_info, "update", task.entity, owners, object_name=f"{info.name}@owner")
    out: Outcomes = {}
    for owner, (owner_key, lines) in zip(owners, by_owner.items(), strict=True):
        outcome = sent[owner.pos].outcome
        for prepared in lines:
            line_outcome = dataclasses.replace(outcome, key=prepared.key, id=None)
            echo = {back_ref: {"key": owner_key}, **prepared.body}
            out[prepared.pos] = ItemResult(task.kind.operation, line_outcome, echo)
    return out
