"""Docs generated from code stay current."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_config_reference_is_current():
    from semcom.config.reference import markdown

    doc = REPO / "docs" / "config.md"
    assert doc.is_file(), (
        "docs/config.md is missing: python -m semcom.config.reference > docs/config.md"
    )
    assert doc.read_text() == markdown(), (
        "docs/config.md is stale: run `.venv/bin/python -m semcom.config.reference > docs/config.md`"
    )


def test_readme_links_exist():
    import re

    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links to missing {target}"
