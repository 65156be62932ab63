"""The tap's parsing path on real recorded Intacct traffic (tests/data/recorded/).

Real responses show what a fake would miss: amounts as decimal strings while the model says
``number``, nested references, ``ia::meta.next`` paging. Each recorded query page is replayed
through the pager and the row plan, and the records are validated against the schema the tap
would advertise for that object (from the recorded model answer and from the spec).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from intacct_api.model_schema import model_to_record_schema
from intacct_api.pager import QueryPager
from intacct_api.records import RowPlan, field_paths
from intacct_api.spec import default_registry
from tap_intacct.columns import SYNTHETIC_COLUMNS
from tap_intacct.discovery import object_definition
from tap_intacct.settings import TapOptions
from tests.support.paths import RECORDED

CASES = sorted(p.name for p in RECORDED.glob("0*.json"))


def interactions(case: str, marker: str) -> list[tuple[dict[str, Any], Any]]:
    data = json.loads((RECORDED / case).read_text())
    found: list[tuple[dict[str, Any], Any]] = []
    for item in data["interactions"]:
        request = item["request"]
        if marker in request["uri"]:
            body = json.loads(request["body"]) if request["body"] else {}
            found.append((body, json.loads(item["response"]["body"]["string"])))
    return found


class Replay:
    """Answers query bodies with the recorded pages, checking the pager asks for them."""

    def __init__(self, pages: list[tuple[dict[str, Any], Any]]) -> None:
        self.pages = list(pages)
        self.bodies: list[dict[str, Any]] = []

    def query(self, body: dict[str, Any], *, entity: Any = None) -> Any:
        self.bodies.append(body)
        recorded_body, answer = self.pages.pop(0)
        assert body["start"] == recorded_body["start"]
        assert body["fields"] == recorded_body["fields"]

        class _Answer:
            def json(self) -> Any:
                return answer

        return _Answer()


@pytest.mark.parametrize("case", CASES)
def test_recorded_pages_replay_through_pager_and_plan(case: str) -> None:
    queries = interactions(case, "/services/core/query")
    first_body = queries[0][0]
    object_name = first_body["object"]
    replay = Replay(queries)
    pager = QueryPager(
        replay,
        object_name,
        first_body["fields"],
        filters=first_body.get("filters"),
        order_by=[{"key": "asc"}],  # offset mode: the recorded client paged by start
        page_size=first_body["size"],
        include_private=True,
    )
    rows = [row for page in pager for row in page]
    assert not replay.pages  # followed ia::meta.next to the end, no extra call
    total = queries[0][1]["ia::meta"]["totalCount"]
    assert len(rows) == total

    model = interactions(case, "/services/core/model")[0][1]
    options = TapOptions()
    definition = object_definition("s", object_name, model_to_record_schema(model), options)
    schema = definition.schema
    plan = RowPlan(
        [f for f in first_body["fields"] if f in field_paths(schema)],
        constants={"_entity": None},
        kinds=definition.field_kinds,  # real traffic has JSON numbers in amount fields
    )
    validator = jsonschema.Draft202012Validator(schema)
    for row in rows:
        record = plan({**row, "API_QUERY_ALIAS__25": None})
        assert "API_QUERY_ALIAS__25" not in record
        assert set(record) - SYNTHETIC_COLUMNS <= set(schema["properties"])
        errors = sorted(validator.iter_errors(record), key=str)
        assert not errors, (row["key"], [e.message for e in errors[:3]])


def test_recorded_amounts_stay_exact_strings() -> None:
    (_, answer), *_ = interactions("01_full_load_customers.json", "/services/core/query")
    rows = answer["ia::result"]
    plan = RowPlan(["key", "totalDue", "creditLimit"])
    dues = {plan(r)["key"]: plan(r)["totalDue"] for r in rows}
    assert dues["59"] == "170200.00"  # "Amazing Retail" as recorded, a string, not a float
    assert all(v is None or isinstance(v, str) for v in dues.values())


def test_recorded_objects_exist_in_the_spec_with_the_queried_fields() -> None:
    registry = default_registry()
    for case in CASES:
        body = interactions(case, "/services/core/query")[0][0]
        info = registry.object(body["object"])
        spec_fields = set(field_paths(info.record_schema()))
        known = [f for f in body["fields"] if f in spec_fields]
        assert "key" in known
        assert len(known) >= len(body["fields"]) // 2, (case, set(body["fields"]) - spec_fields)


def test_deprecated_case_twins_are_left_out_of_the_vendor_stream() -> None:
    """Vendor has `accountlabel` (deprecated) and `accountLabel`: one warehouse column."""
    from intacct_api.spec import default_registry
    from tap_intacct.discovery import without_deprecated_case_twins

    schema = default_registry().object("accounts-payable/vendor").record_schema()
    assert {"accountlabel", "accountLabel"} <= set(schema["properties"])
    kept = without_deprecated_case_twins(schema)["properties"]
    assert "accountLabel" in kept
    assert "accountlabel" not in kept
    folded = [name.lower() for name in kept]
    assert len(folded) == len(set(folded))
