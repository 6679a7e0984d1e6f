"""The README's promises: its two commands, and the config reference covering every key."""

from __future__ import annotations

import re
from pathlib import Path

from deskside import layout, protocols, sources
from deskside.config import LookupSettings, ServerSettings
from deskside.insights.settings import (
    ClassifierSettings,
    HelpScoutSettings,
    InsightsSettings,
    ReportsSettings,
)
from deskside.protocols.plain import PlainCard
from deskside.web.sso_settings import OidcSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)


def test_readme_starts_with_demo_and_test_commands() -> None:
    demo, tests = _shell_blocks()[:2]
    assert demo.endswith("deskside demo")
    assert "pytest" in tests
    assert README.index(demo) < README.index(tests) < README.index("## ")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    tests = _shell_blocks()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci_lines


def test_every_config_key_is_documented() -> None:
    models = [ServerSettings, LookupSettings, layout.CardLayout, layout.FieldLayout]
    models += [layout.BadgeLayout, layout.LinkLayout, layout.SectionLayout]
    models += [*protocols.PROTOCOLS, *sources._SOURCES, PlainCard]
    models += [InsightsSettings, HelpScoutSettings, ClassifierSettings, ReportsSettings]
    models += [OidcSettings]
    missing = {
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if not re.search(rf"`{name}`|\.{name}\]", README)
    }
    assert not missing, f"undocumented config keys: {sorted(missing)}"


def test_demo_config_is_the_documented_example() -> None:
    assert "examples/demo/deskside.toml" in README
    assert (ROOT / "examples" / "demo" / "deskside.toml").is_file()
