"""The API's request and response bodies, as the OpenAPI document publishes them.

Response models mirror what `outbound.views` shapes (the Extraction API's records) and what the
Platform API returns; they forbid extra properties, so the schema fuzzing in the tests catches a
field added to a view and not here. Request bodies reject NUL characters and text that is not
valid Unicode before it reaches the warehouse.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    create_model,
)

from bspk_pipelines.model.brand import EVENT_ALIASES, EVENTS, TARGET_URL
from bspk_pipelines.model.entities import SHOPPERS, Kind
from bspk_pipelines.warehouse.platform import CLIENT_FIELDS


def clean_text(value: str) -> str:
    """Text the warehouse can store: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(clean_text)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ----------------------------------------------------------------------------------

class ErrorDetail(Strict):
    status: int = Field(description="the HTTP status code, repeated")
    message: str = Field(description="what was wrong, for a person to read")


class Error(Strict):
    """Every error answer: `{"error": {"status": 422, "message": "..."}}`."""

    error: ErrorDetail


# --- Extraction API records ------------------------------------------------------------------

class Address(Strict):
    address: str | None
    address_2: str | None
    address_3: str | None
    address_4: str | None
    city: str | None
    state: str | None
    zip: str | None
    country_code: str | None


class CommunicationPreferences(Strict):
    chat_opt_in: bool
    email_opt_in: bool
    phone_opt_in: bool
    whatsapp_opt_in: bool
    wechat_opt_in: bool
    line_opt_in: bool
    opt_out: bool


class Metafield(Strict):
    """A metafield of the client's SHOPPER record, from the brand's METAFIELDS files (active ones)."""

    namespace: str
    key: str
    value: str = Field(description="the value as the file sent it")
    value_type: str
    is_list: bool
    json_value: Any = Field(description="the value typed: a number, boolean, object or list; a decimal as exact text")
    updated_at: datetime


class Client(Strict):
    id: int = Field(description="the platform's client id")
    client_id: str = Field(description="the brand's id of the client (shopper_ref)")
    current_sales_associate_id: str | None
    current_sales_associate_name: str | None
    current_store_id: str | None
    current_store_name: str | None
    name: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    mobile_phone: str | None
    other_phone: str | None
    birthday: date | None
    gender: str | None
    nationality: str | None
    passport_number: str | None
    language: str | None
    title: str | None
    address: str = Field(description="the flat legacy address line; \"\" when none")
    addresses: list[Address]
    preferred_contact_channel: str | None
    communication_preferences: CommunicationPreferences
    preferences: list[str]
    interests: list[str]
    preferred_journey: str | None
    segment: str | None
    referred_by_client_id: str | None
    referred_at: datetime | None
    consent: bool
    notify_of_new_collection: bool
    metafields: list[Metafield] = Field(description="the brand's metafields of the client, by namespace and key")
    last_contacted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = Field(description="set when the client was deleted on the platform")


class _Action(Strict):
    id: int
    store_id: str | None = Field(description="store of the acting associate at the time of the action")
    store_name: str | None
    sales_associate_id: str | None
    sales_associate_name: str | None


class _ClientAction(_Action):
    client_id: str | None = Field(description="the brand's id of the client")
    client_name: str | None


class Call(_ClientAction):
    to: str | None = Field(description="the number dialled")
    created_at: datetime
    updated_at: datetime


class Message(_ClientAction):
    body: str | None
    channel: str
    template_id: str | None
    template_name: str | None
    slice_id: int | None
    media: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class Email(_ClientAction):
    template_id: str | None
    template_name: str | None
    slice_id: int | None
    media: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class Note(_ClientAction):
    body: str | None
    media: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class Slot(_ClientAction):
    """An appointment or a reminder."""

    title: str | None
    body: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    is_done: bool
    is_done_at: datetime | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class Slice(Strict):
    id: int
    store_id: str | None
    store_name: str | None
    created_by_sales_associate_id: str | None
    created_by_sales_associate_name: str | None
    title: str | None
    body: str | None
    item_ids: list[str]
    created_at: datetime
    updated_at: datetime


class IdeabookAction(_ClientAction):
    ideabook_id: str
    action: str = Field(description="created, item_added, item_removed or shared")
    item_id: str | None
    created_at: datetime
    updated_at: datetime


class SalesAssociate(Strict):
    associate_id: str
    associate_id_2: str | None
    sales_associate_name: str
    username: str | None
    email: str | None
    mobile_phone: str | None
    job_title: str | None
    current_store_id: str | None
    imessage_enabled: bool
    wechat_enabled: bool
    line_enabled: bool
    adyen_enabled: bool
    wechat_code: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


RECORDS: dict[str, type[BaseModel]] = {
    "clients": Client, "calls": Call, "messages": Message, "emails": Email, "notes": Note, "appointments": Slot,
    "reminders": Slot, "slices": Slice, "sales_associates": SalesAssociate, "ideabook_actions": IdeabookAction,
}


# --- Platform API: clients -------------------------------------------------------------------

BOOLEAN_TEXT = Literal["true", "false", "TRUE", "FALSE"]


def _client_field(name: str) -> tuple[Any, Any]:
    """A client attribute as the API accepts it: null or "" resets it (the blank-resets rule)."""
    column = SHOPPERS.column(name)
    if column.kind is Kind.BOOL:
        return StrictBool | BOOLEAN_TEXT | Literal[""] | None, Field(None, description="sent as \"true\"/\"false\" or a boolean")
    if column.kind is Kind.ENUM:
        return Literal[(*column.choices, "")] | None, None
    extra = {"max_length": column.max_len} if column.max_len else {}
    what = {Kind.DATE: "ISO date YYYY-MM-DD", Kind.LIST: "`;` list", Kind.LANGUAGES: "`;` list of ISO 639-1 codes",
            Kind.PHONE: "E.164", Kind.COUNTRY: "ISO 3166 alpha-2"}.get(column.kind)
    return Text | None, Field(None, description=what, **extra)


ClientFields = create_model(
    "ClientFields",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A client's attributes. Attributes left out are unchanged; null or \"\" clears one (as a blank does in "
            "a SHOPPER file); the attributes named in `ignore_columns` are left unchanged even when sent.",
    shopper_ref=(Text, Field(min_length=1, max_length=255, description="the brand's id of the client: the upsert key")),
    **{name: _client_field(name) for name in CLIENT_FIELDS},
    ignore_columns=(Text | None, Field(None, max_length=2000, description="`;` list of attributes to leave unchanged")),
)


EXAMPLE_CLIENT = {
    "shopper_ref": "CLI-789", "first_name": "John", "last_name": "Meyer", "email": "client1@email.com",
    "mobile_phone": "+5511987669944", "country_code": "US", "languages": "en;fr", "email_contact": "true",
    "phone_call_contact": "false", "birthday": "1982-02-22", "preferences": "Young Professional; Lawyer",
    "ignore_columns": "first_name;last_name",
}


class ClientBody(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"client": EXAMPLE_CLIENT}]})

    client: ClientFields  # type: ignore[valid-type]


class ShopperBody(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"shopper": EXAMPLE_CLIENT}]})

    shopper: ClientFields  # type: ignore[valid-type]


# --- Platform API: webhook endpoints ---------------------------------------------------------

EventName = Literal[(*EVENTS, *EVENT_ALIASES)]  # type: ignore[valid-type]
TargetUrl = Annotated[Text, Field(min_length=8, max_length=2048, pattern=TARGET_URL)]


class WebhookEndpointCreate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "target_url": "https://mycompany.example/incoming_webhooks/clients", "is_enabled": True,
        "events": ["client.created", "client.updated", "client.deleted", "file_import.finished"]}]})

    target_url: TargetUrl
    is_enabled: bool = True
    events: list[EventName] = Field(min_length=1, max_length=len(EVENTS) + len(EVENT_ALIASES))


class WebhookEndpointUpdate(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"is_enabled": False}]})

    target_url: TargetUrl | None = None
    is_enabled: bool | None = None
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EVENTS) + len(EVENT_ALIASES))


class WebhookEndpoint(Strict):
    id: int
    target_url: str
    events: list[str]
    is_enabled: bool = Field(description="when false, nothing is delivered")
    origin: Literal["api", "config"] = Field(description="api: made with this API; config: the brand's YAML (read-only here)")
    disabled_reason: str | None = Field(description="set when the receiver answered 410 Gone; PATCH is_enabled=true clears it")
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(description="the signing secret (whsec_...): returned only by the create call")


# --- Platform API: imports -------------------------------------------------------------------

class ImportCounts(Strict):
    rows_read: int | None
    rejected: int | None
    superseded: int | None
    inserted: int | None
    updated: int | None
    unchanged: int | None
    held: int | None
    deleted: int | None


class ImportRejects(Strict):
    count: int
    href: str = Field(description="where to list them")


class ImportStatus(Strict):
    id: str = Field(description="follow the import with GET /api/platform/v1/imports/{id}")
    file_name: str
    source: str
    entity: str | None
    status: Literal["received", "validated", "mapped", "applied", "duplicate", "failed", "refused"] = Field(
        description="received: uploaded (landed false) or landed and waiting; applied, duplicate or failed: final; "
        "refused: the drop folder entry is a link, not a regular file, or unreadable (looked at again; `error` says why)")
    landed: bool = Field(description="false until the drop-folder sensor has picked the file up")
    size: int
    sha256: str | None = Field(description="null while the file waits in the drop folder (the upload's answer has it)")
    received_at: datetime
    applied_at: datetime | None
    error: str | None
    duplicate_of: str | None
    counts: ImportCounts
    rejects: ImportRejects


class Reject(Strict):
    line: int
    column: str
    value: str | None
    rule: str
    message: str
