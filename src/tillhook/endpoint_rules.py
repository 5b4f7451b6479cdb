"""An endpoint's settings and their limits, defined once. The config file's `[[endpoints]]`
(config.EndpointConfig) and the admin API's bodies (api/schemas.py: EndpointIn, and
EndpointPatch field by field) are made of these types, so the file, the API, the CLI (through
the API) and the dashboard's forms accept and refuse the same values in the same words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MaxLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StringConstraints,
    ValidationInfo,
)

from tillhook import rules
from tillhook.expressions import language
from tillhook.models import Endpoint, SigningSecret
from tillhook.models import ExtraSignature as SignatureRecord
from tillhook.targets import Network
from tillhook.wording import part_refused

MAX_URL_CHARS = 2048
MAX_PATTERNS = 100
MAX_HEADERS = 50
MAX_HEADER_NAME_CHARS = 128
MAX_IN_FLIGHT = 1000
MAX_RATE_PER_S = 100_000

FILTER_DOC = "CEL over the event (id, type, timestamp, data, test): false means no delivery here"
TRANSFORM_DOC = (
    "CEL over the event (id, type, timestamp, data, test): its result, as JSON, is the body sent instead of the event"
)
PRESET_DOC = "a built-in transform into a chat message: slack, discord, teams or google-chat"
EXTRA_SIGNATURE_DOC = "also sign the body as `sha256=<hex>` in this header, for receivers built that way"
SECRET_DOC = "whsec_ + base64; generated when absent"
DESCRIPTION_DOC = "what the endpoint is for, in one line (at most 500 characters), shown beside its name"
CATEGORY_DOC = (
    "what the dashboard groups it under and GET /v1/endpoints?category= selects, compared exactly:"
    " 1 to 64 letters, digits, spaces, _ . or -"
)


def url_policy(allow_http: bool, allow_networks: Sequence[Network]) -> dict[str, Any]:
    """The validation context a URL is judged in: delivery.allow_http and allow_networks.
    Without it a URL is held to the strictest policy (https, public addresses only)."""
    return {"allow_http": allow_http, "allow_networks": list(allow_networks)}


def _deliverable(url: str, info: ValidationInfo) -> str:
    context = info.context or {}
    return rules.check_url(url, context.get("allow_http") is True, context.get("allow_networks", ()))


def _headers(headers: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    rules.check_headers(headers)
    url = info.data.get("url")  # absent when the url itself failed, which then says why
    if isinstance(url, str):
        rules.check_url_with_headers(url, headers)
    return headers


def _secret(secret: SecretStr) -> SecretStr:
    rules.check_secret(secret.get_secret_value())
    return secret


def _filter(source: str) -> str:
    return language.check(source, "filter")


def _transform(source: str) -> str:
    return language.check(source, "transform")


EndpointName = Annotated[str, StringConstraints(pattern=rules.ENDPOINT_NAME_PATTERN)]
EndpointUrl = Annotated[str, StringConstraints(max_length=MAX_URL_CHARS), AfterValidator(_deliverable)]
EventPatterns = Annotated[list[str], MaxLen(MAX_PATTERNS), AfterValidator(rules.check_patterns)]
Secret = Annotated[SecretStr, AfterValidator(_secret)]
MaxInFlight = Annotated[int, Ge(1), Le(MAX_IN_FLIGHT)]
RateLimit = Annotated[float, Gt(0), Le(MAX_RATE_PER_S)]
Headers = Annotated[dict[str, str], MaxLen(MAX_HEADERS), AfterValidator(_headers)]
Filter = Annotated[str, AfterValidator(_filter)]
Transform = Annotated[str, AfterValidator(_transform)]
Preset = Annotated[str, AfterValidator(rules.check_preset)]
# Checked by a function, so every mistake is said in the same words; the document still shows the rule.
Description = Annotated[
    str,
    AfterValidator(rules.check_description),
    Field(json_schema_extra={"minLength": 1, "maxLength": rules.MAX_DESCRIPTION_CHARS}),
]
Category = Annotated[
    str,
    AfterValidator(rules.check_category),
    Field(json_schema_extra={"pattern": rules.CATEGORY_PATTERN, "maxLength": rules.MAX_CATEGORY_CHARS}),
]
SignatureHeader = Annotated[
    str, StringConstraints(max_length=MAX_HEADER_NAME_CHARS), AfterValidator(rules.check_signature_header)
]


class ExtraSignatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    header: SignatureHeader = Field(examples=["x-hub-signature-256"])
    scheme: Literal["sha256-hex"] = Field(
        default="sha256-hex", description="`sha256=<hex HMAC-SHA256 of the body>`, keyed with the whole secret"
    )


def _apart(spec: ExtraSignatureSpec, info: ValidationInfo) -> ExtraSignatureSpec:
    try:
        rules.check_signature_apart(spec.header, info.data.get("headers") or {})
    except ValueError as exc:
        raise part_refused("header", str(exc)) from None
    return spec


ExtraSignature = Annotated[ExtraSignatureSpec, AfterValidator(_apart)]


class EndpointSettings(BaseModel):
    """An endpoint as the config file and POST /v1/endpoints give it. A field validated
    later may look at one before it (headers at url, extra_signature at headers): the order
    of the fields is part of the rules."""

    model_config = ConfigDict(extra="forbid")

    name: EndpointName
    url: EndpointUrl
    events: EventPatterns = ["*"]
    secret: Secret | None = Field(default=None, description=SECRET_DOC)
    max_in_flight: MaxInFlight | None = None
    rate_limit: RateLimit | None = Field(default=None, description="attempts per second")
    # TOML and JSON have booleans: a quoted "true" is a mistake worth naming.
    ordered: StrictBool = False
    headers: Headers = {}
    filter: Filter | None = Field(default=None, description=FILTER_DOC, examples=["data.amount > 100.0"])
    transform: Transform | None = Field(default=None, description=TRANSFORM_DOC)
    preset: Preset | None = Field(default=None, description=PRESET_DOC, examples=["slack"])
    extra_signature: ExtraSignature | None = Field(default=None, description=EXTRA_SIGNATURE_DOC)
    description: Description | None = Field(
        default=None, description=DESCRIPTION_DOC, examples=["Loyalty points for the app"]
    )
    category: Category | None = Field(default=None, description=CATEGORY_DOC, examples=["Loyalty"])

    def record(
        self, secrets: tuple[SigningSecret, ...], *, enabled: bool = True, config_managed: bool = False
    ) -> Endpoint:
        """The endpoint these settings make; the store gives it its id."""
        signature = self.extra_signature
        return Endpoint(
            id="",
            name=self.name,
            url=self.url,
            events=tuple(self.events),
            secrets=secrets,
            max_in_flight=self.max_in_flight,
            rate_limit=self.rate_limit,
            ordered=self.ordered,
            headers=tuple(self.headers.items()),
            enabled=enabled,
            config_managed=config_managed,
            filter=self.filter,
            transform=self.transform,
            preset=self.preset,
            extra_signature=SignatureRecord(signature.header, signature.scheme) if signature else None,
            description=self.description,
            category=self.category,
        )
