"""The reference of the platform's files (docs/entities.md, `bspk entities`) is what the entity specs
say: the file matches the generator, and each entity's example row passes the platform's own checks
when a brand drops it, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path


from bspk_pipelines.cli import main
from bspk_pipelines.model.entities import ENTITIES
from bspk_pipelines.model.reference import REGENERATE, document, example_csv, file_name, section

DOCS = Path(__file__).resolve().parent.parent / "docs" / "entities.md"


def test_docs_entities_md_is_what_the_specs_say():
    assert DOCS.exists(), f"docs/entities.md is missing: run {REGENERATE}"
    assert DOCS.read_text(encoding="utf-8") == document(), (
        f"docs/entities.md is not what bspk_pipelines/model/entities.py says: run {REGENERATE}")


def test_every_column_of_every_entity_is_documented():
    for entity in ENTITIES.values():
        text = section(entity)
        assert all(f"| `{c.name}` |" in text for c in entity.columns), entity.name
        assert example_csv(entity).splitlines()[0] == ",".join(c.header or c.name for c in entity.columns)


def test_bspk_entities_prints_one_or_all_and_writes(tmp_path, capsys):
    assert main(["entities"]) == 0
    assert capsys.readouterr().out == document()
    assert main(["entities", "PRODUCT-IMAGES"]) == 0
    assert capsys.readouterr().out == section(ENTITIES["product_images"])
    assert main(["entities", "products", "--write", str(tmp_path / "products.md")]) == 0
    assert (tmp_path / "products.md").read_text(encoding="utf-8") == section(ENTITIES["products"])


def test_bspk_entities_names_the_known_entities_for_an_unknown_one(capsys):
    assert main(["entities", "clients"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'clients'" in err[0] and all(name in err[0] for name in ENTITIES)


def test_every_example_row_passes_the_platforms_checks(harness):
    """Each example dropped as the brand would drop it, in dependency order (so its references
    name the records the examples before it created): read, checked, applied, nothing rejected
    or held."""
    for i, entity in enumerate(ENTITIES.values()):
        name = file_name(entity, harness.brand.company_name, f"20260101{i:04d}")
        harness.drop(name, example_csv(entity))
        record = harness.ingest(name)
        assert harness.rejects(name) == [], entity.name
        assert (record["status"], record["rows_read"], record["rejected"], record["held"]) == ("applied", 1, 0, 0), record
        assert len(harness.rows(entity.name)) == 1, entity.name
