"""Regenerate what documents the plugins' settings: meltano.yml, plugins/ and the README tables.

The plugins' config schemas are the single source of truth for their settings. meltano.yml must
declare every one of them (with a Meltano `kind`, `sensitive` for secrets, the description and
the default) so `meltano config` and the UI know them without Meltano Hub, the README shows
the settings table that `--about --format=markdown` prints, and the Hub-format plugin
definitions under plugins/ (for `meltano add --from-ref` in any project) carry the same
settings and capabilities. Run after changing a setting:
.venv/bin/python scripts/sync_plugin_docs.py   (tests fail while any of them is out of date).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MELTANO_YML = ROOT / "meltano.yml"
README = ROOT / "README.md"
README_SECTIONS = {"tap-settings": "tap-intacct", "target-settings": "target-intacct"}
PLUGINS = {"extractors": "tap-intacct", "loaders": "target-intacct"}
DISTRIBUTION = "intacct-singer"
"""PyPI name of this project (`tap-intacct` on PyPI and the Hub is another project)."""
VARIANT = "intacct-singer"
DEFINITIONS = ROOT / "plugins"
LABELS = {"tap-intacct": "Sage Intacct (REST API)", "target-intacct": "Sage Intacct (REST API)"}

_KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}


def _types(prop: dict[str, Any]) -> list[str]:
    """JSON types a property admits, looking through anyOf/oneOf unions."""
    found: list[str] = []
    for node in [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]:
        kind = node.get("type")
        found.extend([kind] if isinstance(kind, str) else (kind or []))
    return [t for t in found if t != "null"]


def meltano_setting(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """One Meltano setting definition for a JSON-schema property of the plugin's config."""
    setting: dict[str, Any] = {"name": name}
    types = _types(prop)
    if prop.get("secret"):
        setting["kind"] = "password"
        setting["sensitive"] = True
    elif prop.get("enum"):
        setting["kind"] = "options"
        setting["options"] = [{"label": str(v), "value": v} for v in prop["enum"]]
    elif prop.get("format") == "date-time":
        setting["kind"] = "date_iso8601"
    elif "array" in types:
        setting["kind"] = "array"
    elif types:
        setting["kind"] = _KINDS.get(types[0], "string")
    else:
        setting["kind"] = "string"
    if prop.get("description"):
        setting["description"] = " ".join(str(prop["description"]).split())
    if "default" in prop and prop["default"] is not None:
        setting["value"] = prop["default"]
    return setting


def _about(executable: str, fmt: str) -> str:
    """`--about` output of one of our console scripts from the running venv."""
    return subprocess.run(  # noqa: S603 - our own console script from the project venv
        [str(Path(sys.executable).parent / executable), "--about", f"--format={fmt}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def plugin_settings(executable: str) -> list[dict[str, Any]]:
    """Every setting the plugin declares, in its own order, as Meltano settings.

    One Meltano-only default: the tap's `objects` defaults to the curated default objects
    (tap_intacct.selection). Meltano selects every discovered stream unless the project says
    otherwise (and `meltano add --from-ref` drops a definition's `select`), so under Meltano the
    curated default is what discovery is limited to; the rest is opt-in by adding objects.
    It also keeps Meltano's per-run discovery small (20 schemas, not 523).
    """
    properties = json.loads(_about(executable, "json"))["settings"]["properties"]
    settings = [meltano_setting(name, prop) for name, prop in properties.items()]
    if executable == "tap-intacct":
        from tap_intacct.selection import DEFAULT_OBJECTS

        for setting in settings:
            if setting["name"] == "objects":
                setting["value"] = list(DEFAULT_OBJECTS)
    return settings


def synced_project() -> dict[str, Any]:
    """meltano.yml as it should be: current content with regenerated plugin settings."""
    project = yaml.safe_load(MELTANO_YML.read_text())
    for plugin_type, name in PLUGINS.items():
        (plugin,) = [p for p in project["plugins"][plugin_type] if p["name"] == name]
        plugin["settings"] = plugin_settings(plugin["executable"])
    return project


def definition_path(plugin_type: str, name: str) -> Path:
    """Where the Hub-format definition of one plugin lives (`<name>--<variant>.yml`)."""
    return DEFINITIONS / plugin_type / f"{name}--{VARIANT}.yml"


def plugin_definition(plugin_type: str, name: str) -> dict[str, Any]:
    """A Meltano Hub plugin definition for one of our plugins.

    Capabilities and settings group validation are meltano.yml's (checked against the plugin by
    the tests), settings come from the plugin's own schema (see :func:`plugin_settings` for the
    tap's `objects` default).
    """
    project = yaml.safe_load(MELTANO_YML.read_text())
    (entry,) = [p for p in project["plugins"][plugin_type] if p["name"] == name]
    about = json.loads(_about(entry["executable"], "json"))
    definition: dict[str, Any] = {
        "name": name,
        "variant": VARIANT,
        "label": LABELS[name],
        "description": " ".join(str(about.get("description") or "").split()),
        "namespace": entry["namespace"],
        "pip_url": DISTRIBUTION,
        "executable": entry["executable"],
        "domain_url": "https://www.sage.com/en-us/sage-business-cloud/intacct/",
        "keywords": ["meltano_sdk", "intacct", "sage"],
        "maintenance_status": "active",
        "capabilities": list(entry["capabilities"]),
        "settings_group_validation": entry.get("settings_group_validation", []),
        "settings": plugin_settings(entry["executable"]),
    }
    return definition


def synced_definitions() -> dict[Path, str]:
    """The plugins/ files as they should be (path -> YAML text)."""
    header = (
        "# Generated by scripts/sync_plugin_docs.py from the plugin's own settings; do not edit.\n"
        "# meltano add --from-ref <this file>   (in any Meltano project)\n"
    )
    return {
        definition_path(kind, name): header
        + yaml.safe_dump(plugin_definition(kind, name), sort_keys=False, width=100)
        for kind, name in PLUGINS.items()
    }


def settings_table(executable: str) -> str:
    """The settings table of the plugin's markdown `--about` (its `## Settings` section)."""
    markdown = _about(executable, "markdown")
    match = re.search(r"^## Settings\n(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    if match is None:
        raise SystemExit(f"{executable} --about --format=markdown has no Settings section")
    return f"### {executable} settings\n\n{match.group(1).strip()}\n"


def replace_section(text: str, marker: str, content: str) -> str:
    """Put `content` between `<!-- marker:start -->` and `<!-- marker:end -->`."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}{end}{tail}"


def synced_readme() -> str:
    """README.md as it should be: current text with regenerated settings tables."""
    text = README.read_text()
    for marker, executable in README_SECTIONS.items():
        text = replace_section(text, marker, settings_table(executable))
    return text


def main() -> int:
    """Rewrite meltano.yml and the README's settings tables in place."""
    MELTANO_YML.write_text(yaml.safe_dump(synced_project(), sort_keys=False, width=100))
    README.write_text(synced_readme())
    for path, text in synced_definitions().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"updated {MELTANO_YML.relative_to(ROOT)}, {README.relative_to(ROOT)} and plugins/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
