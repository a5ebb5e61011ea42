"""The reference of the platform's files, written from the entity specs: `docs/entities.md` and
`bspk entities [NAME]` print the same text.

Every fact comes from `model/entities.py` (columns, keys, references, the list, reset and
replace rules) and `model/constraints.py` (what a value must be, as the UI's column schemas say
it); only the example values are chosen here, and a test ingests each example row to show it
passes the platform's own checks.
"""

from __future__ import annotations

import csv
import io

from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines.model.constraints import LISTS, is_key, is_unique, value_rule
from bspk_pipelines.model.entities import DEPENDENCY_ORDER, ENTITIES, BY_FILE_TYPE, Column, Entity, Kind, dependents

# How docs/entities.md is rewritten when the specs change (its test says so when it is stale).
REGENERATE = "`make docs` (which runs `bspk entities --write docs/entities.md`)"
FILE_NAME = "{type}_{version}_{company}_{stamp}.csv"

# Example values: by column name, so the references of one entity's example name the records of
# another's (the product P100, the shopper CLI-100); then by (entity, column); else by kind.
EXAMPLE_BY_NAME = {
    "store_region_ref": "EU", "store_ref": "ST001", "sales_associate_ref": "SA001", "shopper_ref": "CLI-100",
    "address_ref": "HOME", "product_ref": "P100", "sku": "P100-BLK", "sale_ref": "T5001",
    "first_name": "Marie", "last_name": "Curie", "alternate_first_name": "Maria", "alternate_last_name": "Sklodowska",
    "title": "Mme", "address": "1 rue de la Paix", "address_1": "1 rue de la Paix", "address_2": "Bâtiment A",
    "address_3": "3e étage", "address_4": "Porte 12", "city": "Paris", "state": "Île-de-France",
    "province": "Île-de-France", "province_code": "IDF", "zip_code": "75002", "zip": "75002", "country": "France",
    "country_code": "FR", "nationality": "FR", "currency_code": "EUR", "language_code": "fr", "languages": "fr;en",
    "company_name": "Curie SARL", "barcode": "3760001234567", "segment": "VIP", "passport_number": "19AB12345",
    "preferences": "Young Professional; Lawyer", "store_refs": "ST001;ST002", "skus": "P100-BLK",
    "description": "A black leather tote bag.", "categories": "Bags>>Totes; Leather", "product_brand": "Acme",
    "option_1_name": "Colour", "option_1_value": "Black", "option_2_name": "Size", "option_2_value": "M",
    "option_3_name": "Material", "option_3_value": "Leather",
    "email": "marie.curie@example.com", "privacy_policy_email": "privacy@example.com",
    "privacy_policy_link": "https://www.example.com/privacy", "image_url": "https://img.example.com/p100-1.jpg",
    "mobile_phone": "+33612345678", "other_phone": "+33142650000", "phone": "+33142650000",
    "gender": "F", "preferred_contact_channel": "email", "profile_type": "person",
    "price": "399.99", "quantity": "2", "position": "1",
    "birthday": "1980-05-17", "creation_date": "2024-01-15", "starting_on": "2024-01-15", "ending_on": "2024-02-15",
    "at": "2024-01-15T10:00:00", "created_at": "2024-01-15T10:00:00",
    # A discounted price may end (ending_on is only valid on one).
    "discounted": "TRUE", "do_not_contact": "FALSE",
    # Special orders name the shopper, store and associate of the examples above.
    "order_ref": "SO-1001", "line_item_ref": "SO-1001-1", "shopper_id": "CLI-100", "store_id": "ST001",
    "sales_associate_id": "SA001", "total_amount": "399.99", "type": "repair", "status": "open", "sequence": "1",
    "reference": "IB01T/38259",
    # A metafield of the shopper CLI-100.
    "owner_ref": "CLI-100", "namespace": "custom", "key": "favorite_color", "is_list": "false", "value": "Blue",
}
EXAMPLE_BY_ENTITY = {
    ("store_regions", "name"): "Europe",
    ("stores", "name"): "Saint Honoré",
    ("products", "name"): "Tote bag",
    ("sales", "quantity"): "1",
    ("special_order_line_items", "name"): "Custom goat skin gloves",
    ("special_order_events", "description"): "Sent to fabrication",
    ("special_order_events", "action_required"): "FALSE",
}
EXAMPLE_BY_KIND = {
    Kind.EMAIL: "contact@example.com", Kind.URL: "https://www.example.com/", Kind.PHONE: "+33142650000",
    Kind.COUNTRY: "FR", Kind.CURRENCY: "EUR", Kind.LANGUAGE: "fr", Kind.LANGUAGES: "fr",
    Kind.INT: "1", Kind.DECIMAL: "1.00", Kind.DATE: "2024-01-15", Kind.DATETIME: "2024-01-15T10:00:00",
    Kind.LIST: "a;b", Kind.CATEGORIES: "A>>B",
}


def find(name: str) -> Entity | None:
    """An entity by its name (`product_images`) or its file type (`PRODUCT-IMAGES`)."""
    return ENTITIES.get(name) or BY_FILE_TYPE.get(name.upper())


def file_name(entity: Entity, company: str = "<CompanyName>", stamp: str = "<YYYYMMDDHHMM>", version: str | None = None) -> str:
    return FILE_NAME.format(type=entity.file_type, version=version or entity.versions[0], company=company, stamp=stamp)


def example(entity: Entity) -> dict[str, str]:
    """A row of every column of the entity (by column name) that breaks none of its rules."""
    return {c.name: _example(entity, c) for c in entity.columns}


def _example(entity: Entity, c: Column) -> str:
    if (entity.name, c.name) in EXAMPLE_BY_ENTITY:
        return EXAMPLE_BY_ENTITY[entity.name, c.name]
    if c.name in EXAMPLE_BY_NAME:
        return EXAMPLE_BY_NAME[c.name]
    if c.choices:
        return c.choices[0]
    if c.kind is Kind.BOOL:
        return c.truth[0]
    return EXAMPLE_BY_KIND.get(c.kind, c.name.replace("_", " ").capitalize())


def example_csv(entity: Entity) -> str:
    """The example as a file of the platform's format: the header line (every column, as the file
    names it) and one row."""
    dialect = Dialect()
    out = io.StringIO()
    writer = csv.writer(out, delimiter=dialect.delimiter, quotechar=dialect.quote, lineterminator="\n")
    row = example(entity)
    writer.writerow([c.header or c.name for c in entity.columns])
    writer.writerow([row[c.name] for c in entity.columns])
    return out.getvalue()


def document() -> str:
    """docs/entities.md: the general rules, the entities in dependency order, then each one."""
    return "\n".join([_intro(), *(section(e) for e in ENTITIES.values())])


def _intro() -> str:
    dialect = Dialect()
    lines = [
        "# The platform's files",
        "",
        "<!-- Generated from bspk_pipelines/model/entities.py by bspk_pipelines/model/reference.py: do not edit.",
        f"     Regenerate with {REGENERATE}. -->",
        "",
        "Each entity of the platform is fed by one type of CSV file, named "
        f"`{FILE_NAME.format(type='<TYPE>', version='<VERSION>', company='<CompanyName>', stamp='<YYYYMMDDHHMM>')}`. "
        f"Files of the platform's own format are {dialect.encoding.upper()}, fields separated by `{dialect.delimiter}` "
        f"and quoted with `{dialect.quote}` when needed. `bspk entities [NAME]` prints the same text for one "
        "entity (its name or file type) or all of them; a brand that sends its own format maps its columns to "
        "these (README, \"The brand file\").",
        "",
        "How to read the column tables:",
        "",
        "- **header**: *must* columns are in every file's header, *may* columns can be left out (the stored "
        "value is then kept). The header gives the order; no other column is accepted.",
        "- **required**, **key**: a blank there rejects the row, except in a key column marked *blank allowed*, "
        "where blank is a value of its own.",
        "- **blank**: what a blank field does. A blank non-required attribute *clears* the stored value "
        "(send every value you want to keep).",
        "- **unique**: at most one record holds a value; within a file a later row with the same key "
        "(or unique value) is rejected, unless the entity keeps the latest row (below).",
        "- **list**: one field holds several values, separated by the character shown; spaces around "
        "each value are trimmed.",
        "- **length**: the number of characters a value may have.",
        "- A row breaking a rule is rejected and kept with its file, line, column, value and rule; the "
        "other rows go on. A row naming a record that is not known yet (see *references*) is held and "
        "applied when that record arrives.",
        "",
        "| # | entity | file type | versions | key |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {DEPENDENCY_ORDER[e.name] + 1} | [{e.name}](#{e.name}) | `{e.file_type}` | {', '.join(e.versions)} | "
              f"{_names(e.key)} |" for e in ENTITIES.values()]
    return "\n".join(lines) + "\n"


def section(entity: Entity) -> str:
    """One entity: its file, key, references and rules, the table of its columns, an example."""
    names = " or ".join(f"`{file_name(entity, version=v)}`" for v in entity.versions)
    lines = [
        f"## {entity.name}",
        "",
        f"File type `{entity.file_type}`, version {' or '.join(entity.versions)}: {names}. "
        f"Number {DEPENDENCY_ORDER[entity.name] + 1} of {len(ENTITIES)} in the dependency order.",
        "",
        f"- **key**: {_names(entity.key)}" + (f" ({_names(entity.optional_key)} may be blank)" if entity.optional_key else ""),
    ]
    lines += [f"- **references**: `{r.column}` names a [{r.entity}](#{r.entity}) record (its `{r.target_column}`)"
              + (f" where `{r.when[0]}` is `{r.when[1]}`" if r.when else "") + "; the row is held until it exists"
              + "".join(f"; that record's `{t}` must be the row's `{c}` (else the row is rejected `reference`)"
                        for c, t in r.agrees)
              for r in entity.references]
    if dependents(entity.name):
        lines.append(f"- **referenced by**: {', '.join(f'[{d}](#{d})' for d in dependents(entity.name))}")
    if entity.latest_by:
        lines.append(f"- **latest wins**: of the rows for one key, the one with the latest `{entity.latest_by}` is kept, "
                     "whatever the order of the rows and files")
    if entity.replace_set_by:
        lines.append(f"- **replaced as a set**: a file's rows are the complete set for each {_names(entity.replace_set_by)} "
                     "it names; that value's stored rows the file does not hold are removed")
    if entity.append_only:
        lines.append(f"- **append-only**: a stored {_names(entity.key)} never changes; a row sending it again with "
                     "other values is rejected `append_only`")
    if entity.month_column:
        lines.append(f"- **by month**: stored by the month of `{entity.month_column}`; each month is rebuilt from every "
                     "file that holds rows of it")
    lines += [
        "",
        "| column | in the file as | kind | length | required | key | unique | list | header | blank | value |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(entity, c) for c in entity.columns]
    if entity.notes:
        lines += ["", "Notes (choices made where the published reference is silent or cut off):", ""]
        lines += [f"- {_cell(n)}" for n in entity.notes]
    lines += ["", "Example:", "", "```csv", example_csv(entity).rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _row(entity: Entity, c: Column) -> str:
    key = ("yes, blank allowed" if c.name in entity.optional_key else "yes") if is_key(entity, c) else ""
    length = "" if c.max_len is None else f"{c.min_len}-{c.max_len}" if c.min_len > 1 else str(c.max_len)
    cells = [
        f"`{c.name}`", f"`{c.header}`" if c.header else "", c.kind.value, length,
        "yes" if c.required else "", key, "yes" if is_unique(entity, c) else "",
        f"`{LISTS[c.kind]}`" if c.kind in LISTS else "", "must" if c.in_header else "may",
        blank_rule(entity, c), value_description(c),
    ]
    return "| " + " | ".join(_cell(x) for x in cells) + " |"


def blank_rule(entity: Entity, c: Column) -> str:
    """What a blank field of the column does."""
    if c.name in entity.optional_key:
        return "a key value of its own"
    if c.default is not None:
        return f"stored as {c.default}"
    if is_key(entity, c) or c.required:
        return "rejected"
    return "clears the stored value"


def value_description(c: Column) -> str:
    """What a value must be, with its bounds: the column schema's words, then the numbers."""
    parts = [value_rule(c)]
    if c.kind is Kind.INT:
        parts.append(f"at most {c.max_digits} digits")
    if c.kind is Kind.DECIMAL:
        parts.append(f"at most {c.max_digits} digits before the decimal point")
    if c.minimum is not None:
        parts.append(f"at least {c.minimum:g}")
    if c.case_insensitive:
        parts.append("case-insensitive (stored as last sent)")
    if c.case_insensitive_when:
        parts.append(f"case-insensitive where `{c.case_insensitive_when[0]}` is `{c.case_insensitive_when[1]}` "
                     "(stored as last sent)")
    return "; ".join(parts)


def _names(columns: tuple[str, ...]) -> str:
    return " + ".join(f"`{c}`" for c in columns)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
