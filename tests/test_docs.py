"""Documentation that is generated from code stays in step with it."""

from __future__ import annotations

from service.cli.schema import schema_documents
from service.cli.settings_docs import with_table
from tests.conftest import REPO_ROOT


def test_readme_configuration_table_matches_the_settings() -> None:
    """Every setting, its default and its meaning appear in the README exactly as in the code
    (regenerate with `overdue-notifier config docs --readme README.md`)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == with_table(readme)


def test_exported_json_schemas_match_the_event_models() -> None:
    """The JSON Schemas in schemas/ are exactly what the pydantic models produce
    (regenerate with `overdue-notifier schema export`)."""
    for name, text in schema_documents().items():
        assert (REPO_ROOT / "schemas" / name).read_text(encoding="utf-8") == text, name
