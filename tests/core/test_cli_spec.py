"""`intacct operations|objects|schema` through CliRunner, plus the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from support.http_server import RecordedRequest, Reply, ScriptedServer
from typer.testing import CliRunner

from intacct_api.cli import spec_commands
from intacct_api.cli.app import global_options
from tests.support.paths import RECORDED, ROOT

SPECS = ROOT / "specs"


def make_app() -> typer.Typer:
    """The lead's global options + this command group only."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(global_options)
    spec_commands.register(app)
    return app


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(make_app(), args, env=env or {"INTACCT_SPEC_PATH": ""})


def raw_count(application: str) -> int:
    """Operations of one application, counted straight from the JSON files."""
    count = 0
    for path in SPECS.glob("*.json"):
        for url, item in json.loads(path.read_text())["paths"].items():
            segments = url.split("/")
            if segments[2] != application:
                continue
            count += sum(1 for m in ("get", "post", "put", "patch", "delete") if m in item)
    return count


def test_operations_list_json_counts() -> None:
    result = invoke(["operations", "list", "--application", "accounts-receivable", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == raw_count("accounts-receivable")
    assert {r["application"] for r in rows} == {"accounts-receivable"}
    assert {"operationId", "method", "path", "kind", "object", "summary"} <= set(rows[0])


def test_operations_list_filters_and_text() -> None:
    result = invoke(["operations", "list", "--object", "accounts_payable__bill", "--kind", "get"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [
        "get-accounts-payable-bill-key",
        "GET",
        "get",
        "/objects/accounts-payable/bill/{key}",
    ]
    assert "1 operation(s)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["operations", "list", "--kind", "lst"], "unknown kind 'lst'"),
        (["operations", "list", "--application", "acounts-payable"], "accounts-payable"),
        (["operations", "list", "--object", "accounts-payable/bil"], "accounts-payable/bill"),
        (["operations", "show", "create-accounts-payable-bil"], "create-accounts-payable-bill"),
        (["schema", "accounts-receivable/custmer"], "accounts-receivable/customer"),
        (["schema", "accounts-receivable/customer", "--source", "x"], "unknown --source"),
    ],
)
def test_errors_are_one_line_with_suggestions(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_operations_show() -> None:
    result = invoke(["operations", "show", "create-accounts-payable-bill", "--json"])
    assert result.exit_code == 0, result.stderr
    template = json.loads(result.stdout)
    assert template["operationId"] == "create-accounts-payable-bill"
    required = {f["path"] for f in template["body"]["fields"] if f["required"]}
    assert {"dueDate", "createdDate", "vendor.id"} <= required
    text = invoke(["operations", "show", "get-accounts-payable-bill-key"])
    assert text.exit_code == 0
    assert "* key [path]" in text.stdout


def test_objects_list() -> None:
    result = invoke(["objects", "list", "--application", "accounts-payable", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["accounts-payable/bill-line"]["owner"] == "accounts-payable/bill"
    assert rows["accounts-payable/bill"]["owned_lists"]["lines"] == "accounts-payable/bill-line"
    assert rows["accounts-payable/bill"]["stream"] == "accounts_payable__bill"
    assert {r["application"] for r in rows.values()} == {"accounts-payable"}
    text = invoke(["objects", "list", "--application", "accounts-payable"])
    assert "owned by accounts-payable/bill" in text.stdout


def test_schema_from_spec() -> None:
    result = invoke(["schema", "accounts_receivable__customer", "--json"])
    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["properties"]["key"]["type"] == "string"
    assert schema["properties"]["totalDue"]["x-intacct-type"] == "decimal"
    text = invoke(["schema", "accounts-receivable/customer"])
    assert "totalDue: string|number|null" in text.stdout


def test_spec_path_option_overrides(tmp_path: Path) -> None:
    override = {
        "openapi": "3.0.3",
        "info": {"title": "o", "version": "1"},
        "paths": {
            "/objects/accounts-receivable/customer": {
                "get": {
                    "operationId": "list-accounts-receivable-customer",
                    "summary": "overridden list",
                    "responses": {"204": {"description": "none"}},
                }
            }
        },
    }
    (tmp_path / "o.json").write_text(json.dumps(override))
    result = invoke(
        ["--spec-path", str(tmp_path), "operations", "list", "--kind", "list", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    rows = {r["operationId"]: r for r in json.loads(result.stdout)}
    assert rows["list-accounts-receivable-customer"]["source_file"] == "o.json"
    assert rows["list-accounts-receivable-customer"]["summary"] == "overridden list"


def _model_body() -> dict[str, Any]:
    interactions = json.loads((RECORDED / "01_full_load_customers.json").read_text())
    (body,) = [
        json.loads(it["response"]["body"]["string"])
        for it in interactions["interactions"]
        if "services/core/model" in it["request"]["uri"]
    ]
    return body


def test_schema_from_model_and_compare(tmp_path: Path) -> None:
    body = _model_body()

    def respond(request: RecordedRequest) -> Reply:
        if request.path.endswith("/oauth2/token"):
            token = {"access_token": "tok-planted", "token_type": "Bearer", "expires_in": 3600}
            return Reply(200, token)
        if request.path.endswith("/services/core/model"):
            return Reply(200, body)
        return Reply(404, {"ia::result": {"ia::error": {"code": "notFound"}}})

    with ScriptedServer(respond) as server:
        env = {
            "INTACCT_BASE_URL": server.api_url,
            "INTACCT_CLIENT_ID": "cid",
            "INTACCT_CLIENT_SECRET": "secret-planted",
            "INTACCT_USERNAME": "user@company",
            "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
            "INTACCT_SPEC_PATH": "",
        }
        result = invoke(
            ["schema", "accounts-receivable/customer", "--source", "model", "--json"], env
        )
        assert result.exit_code == 0, result.stderr
        schema = json.loads(result.stdout)
        assert "nsp::r10007" in schema["properties"]
        assert schema["properties"]["creditLimit"]["x-intacct-type"] == "number"
        compared = invoke(["schema", "accounts-receivable/customer", "--compare", "--json"], env)
        assert compared.exit_code == 0, compared.stderr
        diff = json.loads(compared.stdout)
        assert diff["only_right"] == ["nsp::r10007", "nsp::r10008"]
        assert "customerAccountHealth.healthScore" in {m["path"] for m in diff["type_mismatches"]}
        text = invoke(["schema", "accounts-receivable/customer", "--compare"], env)
        assert "only in model: nsp::r10007" in text.stdout
        model_requests = [r for r in server.requests if r.path.endswith("/core/model")]
        assert "name=accounts-receivable%2Fcustomer" in model_requests[0].query
        for output in (result, compared, text):
            assert "planted" not in output.stdout + output.stderr


def test_console_script_subprocess() -> None:
    """The installed `intacct` entry point, as an operator runs it."""
    script = Path(sys.executable).parent / "intacct"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTACCT_")}
    completed = subprocess.run(
        [str(script), "operations", "list", "--application", "accounts-receivable", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    rows = json.loads(completed.stdout)
    assert len(rows) == raw_count("accounts-receivable")
