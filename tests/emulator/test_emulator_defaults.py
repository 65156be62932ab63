"""The emulator fills what Intacct fills on create (issue 13): the spec's defaults for absent
members and the names of referenced records, so a read after a write looks like Intacct's."""

from __future__ import annotations

import httpx

from intacct_emulator.testing import EmulatorServer


def test_create_fills_spec_defaults_and_reference_names(emu: EmulatorServer) -> None:
    emu.reset()
    with httpx.Client(base_url=emu.base_url, headers=emu.auth_headers(), timeout=10) as api:
        made = api.post("/objects/accounts-payable/vendor", json={"id": "DV1", "name": "Defaults"})
        assert made.status_code == 201
        key = made.json()["ia::result"]["key"]
        vendor = api.get(f"/objects/accounts-payable/vendor/{key}").json()["ia::result"]
        assert vendor["status"] == "active"  # the spec's default
        assert vendor["isOnHold"] is False
        explicit = api.post(
            "/objects/accounts-payable/vendor",
            json={"id": "DV2", "name": "Told", "status": "inactive"},
        ).json()["ia::result"]["key"]
        told = api.get(f"/objects/accounts-payable/vendor/{explicit}").json()["ia::result"]
        assert told["status"] == "inactive"  # a value given is never replaced

        customer = api.post(
            "/objects/accounts-receivable/customer", json={"id": "DC1", "name": "Named Customer"}
        )
        assert customer.status_code == 201, customer.text
        invoice = api.post(
            "/objects/accounts-receivable/invoice",
            json={
                "customer": {"id": "DC1"},
                "invoiceDate": "2026-01-05",
                "dueDate": "2026-02-04",
                "currency": {"txnCurrency": "USD"},
            },
        )
        assert invoice.status_code == 201, invoice.text
        invoice_key = invoice.json()["ia::result"]["key"]
        stored = api.get(f"/objects/accounts-receivable/invoice/{invoice_key}").json()
        assert stored["ia::result"]["customer"]["name"] == "Named Customer"


def test_reset_also_restores_the_reports_and_bulk_switches(emu: EmulatorServer) -> None:
    with httpx.Client(base_url=emu.root_url, timeout=10) as control:
        defaults = control.get("/_emulator/bulk").json()
        control.post("/_emulator/bulk", json={"polls_per_state": 7, "fail_jobs": 1})
        control.post("/_emulator/reports", json={"pending_polls": 5})
        assert control.get("/_emulator/bulk").json()["polls_per_state"] == 7
        emu.reset()
        assert control.get("/_emulator/bulk").json() == defaults
        assert control.get("/_emulator/reports").json()["pending_polls"] != 5
