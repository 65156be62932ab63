"""meltano.yml and the README declare every plugin fully (no Meltano Hub) and every setting."""

from __future__ import annotations

import sys

import yaml

from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from sync_plugin_docs import README, plugin_settings, synced_project, synced_readme

PROJECT = yaml.safe_load((ROOT / "meltano.yml").read_text())


def _plugins() -> list[dict]:
    return [p for kind in ("extractors", "loaders") for p in PROJECT["plugins"][kind]]


def test_every_plugin_is_declared_without_the_hub() -> None:
    for plugin in _plugins():
        assert "variant" not in plugin, plugin["name"]
        for key in ("namespace", "pip_url", "executable"):
            assert plugin.get(key), f"{plugin['name']} lacks {key}"


def test_plugin_settings_match_the_plugins_own_schemas() -> None:
    # Fails when a setting was added to a plugin but not to meltano.yml:
    # run `.venv/bin/python scripts/sync_plugin_docs.py`.
    assert synced_project() == PROJECT


def test_secrets_are_sensitive_and_jobs_cover_both_directions() -> None:
    settings = {s["name"]: s for s in plugin_settings("target-intacct")}
    for secret in ("client_secret", "access_token", "refresh_token"):
        assert settings[secret]["sensitive"] is True
        assert settings[secret]["kind"] == "password"
    tasks = {job["name"]: job["tasks"] for job in PROJECT["jobs"]}
    assert any(t.startswith("tap-intacct ") for ts in tasks.values() for t in ts)
    assert any(t.endswith(" target-intacct") for ts in tasks.values() for t in ts)


def test_readme_documents_every_setting_of_both_plugins() -> None:
    # The README tables are the plugins' own `--about --format=markdown` settings tables.
    text = README.read_text()
    assert synced_readme() == text
    for name in ("lookback_minutes", "entities", "deletes", "allow_deletes", "results_path"):
        assert f"| {name} |" in text
