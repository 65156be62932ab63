"""Owned objects (bill lines, journal-entry lines...) are written through their owner.

Intacct has no endpoint of its own for most lines: a line is created, changed or deleted by a
PATCH of its owner whose owned list carries it (``ia::operation: delete`` for a delete). One
request carries up to 500 owners, each with its lines; every line gets its owner's outcome.
The back-reference a line names its owner by is :attr:`ObjectInfo.owner_reference`; where the
PATCH goes is :func:`~intacct_api.mutate_plan.owner_route`:

* the owner itself (a bill for its lines);
* the owner's owner when the owner is a line without an update of its own (a journal entry,
  whose element for the journal-entry line carries its tax entries:
  ``{key, lines: [{key: <line>, taxEntries: [...]}]}``); the owner lines' owners are looked up
  first (:mod:`intacct_api.mutate_owners`);
* at ``{object}::{documentName}/{key}`` for documents (``order-entry/document::Sales
  Invoice/41``), one request per transaction definition.

Lines whose owner cannot be found answer ``error`` naming the owner's key (nothing was sent).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING
from urllib.parse import quote

from intacct_api.errors import IntacctError
from intacct_api.mutate_owners import DOCUMENT_TYPE, document_name_of, lookup_members
from intacct_api.mutate_plan import OwnerRoute, PreparedItem, Task, owner_route
from intacct_api.mutate_results import ItemOutcome, ItemResult, outcome_from_exception
from intacct_api.mutate_send import Outcomes, RequestSender

if TYPE_CHECKING:
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = ["run_lines"]

_Lines = dict[str, list[PreparedItem]]  # owner key -> its lines, input order


def run_lines(
    sender: RequestSender, registry: SpecRegistry, info: ObjectInfo, task: Task
) -> Outcomes:
    """PATCH the owners (or their owners): one element per record carrying the lines."""
    assert info.owner is not None
    route = owner_route(registry, info)
    out: Outcomes = {}
    if isinstance(route, str):  # refused at planning; kept for callers building tasks
        _fail(out, info, task, task.items, ItemOutcome(ok=False, error=route, error_code="notSent"))
        return out
    target = registry.object(route.target)
    by_owner: _Lines = {}
    for prepared in task.items:
        by_owner.setdefault(str(prepared.match_value), []).append(prepared)
    try:
        target_of = _targets(sender, registry, info, route, by_owner, task.entity)
        names = _names(sender, info, route, target, set(target_of.values()), task)
    except IntacctError as exc:  # a look-up (a read) failed: nothing was written
        _fail(out, info, task, task.items, outcome_from_exception(exc))
        return out
    groups: dict[str, dict[str, _Lines]] = {}  # document name -> target key -> owner lines
    for owner_key, lines in by_owner.items():
        target_key = target_of.get(owner_key)
        if target_key is None:
            error = (
                f"{info.owner} {owner_key} was not found (looked up to write its "
                f"{info.name} inside its {target.name})"
            )
            _fail(out, info, task, lines, ItemOutcome(ok=False, error=error, error_code="notFound"))
            continue
        name = names.get(target_key, "") if route.named else ""
        if route.named and not name:
            error = (
                f"{target.name} {target_key} was not found, or has no {DOCUMENT_TYPE} (the "
                f"documentName of its path), so its {info.name} cannot be written"
            )
            _fail(out, info, task, lines, ItemOutcome(ok=False, error=error, error_code="notFound"))
            continue
        groups.setdefault(name, {}).setdefault(target_key, {})[owner_key] = lines
    for name, targets in groups.items():
        _send(sender, registry, info, route, task, name, targets, out)
    return out


def _targets(
    sender: RequestSender,
    registry: SpecRegistry,
    info: ObjectInfo,
    route: OwnerRoute,
    by_owner: _Lines,
    entity: str | None,
) -> dict[str, str]:
    """The key of the record PATCHed for each owner key."""
    if route.via is None:
        return {owner_key: owner_key for owner_key in by_owner}
    via = registry.object(route.via)
    return lookup_members(sender.client, via, by_owner, f"{via.owner_reference}.key", entity)


def _names(
    sender: RequestSender,
    info: ObjectInfo,
    route: OwnerRoute,
    target: ObjectInfo,
    target_keys: set[str],
    task: Task,
) -> dict[str, str]:
    """The document name of each target key (named routes only)."""
    if not route.named:
        return {}
    given = document_name_of(info, task.items) if route.via is None else None
    if given is not None:
        return dict.fromkeys(target_keys, given)
    return lookup_members(sender.client, target, target_keys, DOCUMENT_TYPE, task.entity)


def _send(
    sender: RequestSender,
    registry: SpecRegistry,
    info: ObjectInfo,
    route: OwnerRoute,
    task: Task,
    name: str,
    targets: dict[str, _Lines],
    out: Outcomes,
) -> None:
    """One PATCH (split by the sender beyond its batch size) of ``targets``."""
    target = registry.object(route.target)
    owner_info = registry.object(info.owner or "")
    list_prop = _list_property(owner_info, info.name)
    elements: list[PreparedItem] = []
    for i, (target_key, owners) in enumerate(targets.items()):
        if route.via is None:
            body = {"key": target_key, list_prop: [p.body for p in owners[target_key]]}
        else:
            via_prop = _list_property(target, owner_info.name)
            body = {
                "key": target_key,
                via_prop: [
                    {"key": owner_key, list_prop: [p.body for p in lines]}
                    for owner_key, lines in owners.items()
                ],
            }
        elements.append(PreparedItem(-1 - i, f"{target.name} {target_key}", body, target_key))
    path_info = target
    if name:  # `/objects/order-entry/document::Sales%20Invoice/41`
        path_info = dataclasses.replace(
            target,
            name=f"{target.name}::{quote(name, safe='')}",
            create_operation_id=None,
            list_operation_id=None,
        )
    sent = sender.send(path_info, "update", task.entity, elements, object_name=f"{info.name}@owner")
    back_ref = info.owner_reference or ""
    for element, owners in zip(elements, targets.values(), strict=True):
        outcome = sent[element.pos].outcome
        for owner_key, lines in owners.items():
            for prepared in lines:
                line_outcome = dataclasses.replace(outcome, key=prepared.key, id=None)
                echo = {back_ref: {"key": owner_key}, **prepared.body}
                out[prepared.pos] = ItemResult(task.kind.operation, line_outcome, echo)


def _list_property(owner: ObjectInfo, owned: str) -> str:
    """The owner's list member carrying ``owned`` records (``lines`` failing any)."""
    return next((prop for prop, name in owner.owned_lists.items() if name == owned), "lines")


def _fail(
    out: Outcomes,
    info: ObjectInfo,
    task: Task,
    lines: list[PreparedItem],
    outcome: ItemOutcome,
) -> None:
    back_ref = info.owner_reference or ""
    for prepared in lines:
        echo = {back_ref: {"key": prepared.match_value}, **prepared.body}
        out[prepared.pos] = ItemResult(task.kind.operation, outcome, echo)
