"""Renderer: Jinja2 sandbox that turns one planned notification into the text a borrower reads.

Templates live in `templates/<locale>/<name>.<channel>.j2` (files starting with `_` are
partials for `{% include %}`). All are compiled at start, so a missing or broken template stops
the service naming the file. SMS templates render to the whole text; push templates define the
blocks `title` and `body`. Rendering is pure: no clock, no IO after `load`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from service.errors import ConfigError
from service.events import Channel, LoanOverdueEvent, TemplateRef
from service.policy.model import PlannedNotification
from service.rendering.filters import FILTERS, mask_loan_id
from service.rendering.model import DigestSummary, PushContent, RenderedMessage, SmsContent
from service.rendering.sms import sms_parts

if TYPE_CHECKING:
    from service.policy.config import Policy
    from service.rendering.voice import VoiceScripts

__all__ = [
    "FCM_MAX_PAYLOAD_BYTES",
    "SUPPORTED_LOCALES",
    "TEMPLATE_VARIABLES",
    "RenderError",
    "Renderer",
    "TemplateConfigError",
    "load_template",
    "push_payload_bytes",
    "resolve_locale",
    "template_file",
]

SUPPORTED_LOCALES: tuple[str, ...] = ("zh-CN", "en-US")
FCM_MAX_PAYLOAD_BYTES = 4096
PUSH_BLOCKS = ("title", "body")

# What a template may use besides the filters; `templates check` documents each in its report.
TEMPLATE_VARIABLES = frozenset(
    {
        "brand",  # sender signature (settings: brand_name)
        "customer_service",  # contact printed in every message (settings: customer_service)
        "locale",
        "currency",
        "channel",
        "stage",
        "risk_level",
        "loan",  # id, product, amount_due, principal, interest, penalty, currency, due_date,
        # days_past_due, days_overdue, days_to_due, installment {number, total} | None
        "borrower",  # name | None
        "repay_url",  # repayment link if short enough for an SMS, else None
        "repay_methods",  # list of repayment methods (may be empty)
        "deep_link",  # repayment link of any length, for push; None if absent
        # digest templates only (None otherwise): count, total, earliest_due_date,
        # max_days_overdue, loans [{id, amount_due, due_date, days_overdue}]
        "digest",
    }
)
DIGEST_TEMPLATE = "digest"


class TemplateConfigError(ConfigError):
    """A template is missing, does not compile, or uses an unknown variable. Names the file."""

    variable = "NOTIFIER_TEMPLATES_DIR"
    fix = (
        "point it at a directory of <locale>/<template>.j2 files covering the policy, or unset "
        "it for the shipped templates"
    )


class RenderError(Exception):
    """One message could not be rendered (names the template, never the borrower's data)."""


def template_file(locale: str, name: str, channel: Channel) -> str:
    """The template's path relative to the templates directory, e.g. zh-CN/grace.sms.j2."""
    return f"{locale}/{name}.{channel.value}.j2"


def resolve_locale(event: LoanOverdueEvent, *, default: str) -> str:
    """The borrower's locale if we have templates for it (zh_cn, zh and zh-Hans-CN all mean
    zh-CN), else `default`."""
    wanted = (event.borrower.locale or "").replace("_", "-").lower()
    if not wanted:
        return default
    for supported in SUPPORTED_LOCALES:
        if wanted == supported.lower():
            return supported
    language = wanted.split("-")[0]
    for supported in SUPPORTED_LOCALES:
        if supported.lower().split("-")[0] == language:
            return supported
    return default


def push_payload_bytes(content: PushContent) -> int:
    """Size of the FCM message body that carries `content` (notification + data + link)."""
    data = dict(content.data)
    if content.deep_link:
        data["deep_link"] = content.deep_link
    payload = {"notification": {"title": content.title, "body": content.body}, "data": data}
    # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes, in UTF-8
    # (the same escapes), ~6 us faster per push.
    return len(orjson.dumps(payload))


@dataclass(frozen=True, slots=True)
class _Compiled:
    template: Template
    ref: TemplateRef


class Renderer:
    """Compiled templates plus the brand; `render` is pure and thread-safe."""

    def __init__(
        self,
        compiled: Mapping[str, _Compiled],
        env: SandboxedEnvironment,
        *,
        max_link_chars: int,
    ) -> None:
        self._compiled = dict(compiled)
        self._env = env
        self._max_link_chars = max_link_chars
        # Call scripts (templates/voice/, service/rendering/voice.py), when the directory has
        # them: `render` hands voice plans to them.
        self.voice: VoiceScripts | None = None

    @classmethod
    def load(
        cls,
        templates_dir: Path,
        *,
        brand: str,
        customer_service: str,
        max_link_chars: int = 30,
    ) -> Renderer:
        """Compile every template under `templates_dir`; raise TemplateConfigError naming the
        first file that is broken. `max_link_chars`: longer repayment links are left out of SMS
        (templates then point to the app) so that the text keeps its part limit."""
        if not templates_dir.is_dir():
            raise TemplateConfigError(f"templates directory {templates_dir} does not exist")
        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # SMS and push are plain text; HTML escaping would corrupt them
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Compiled once here, never read again: with jinja's default auto_reload every
            # `{% include %}` stat()ed its partial on each render (IO on the hot path, and a
            # file edited while running would be rendered under the version hashed at start),
            # and an unbounded cache keeps every template of the directory without LRU upkeep.
            auto_reload=False,
            cache_size=-1,
        )
        env.filters.update(FILTERS)
        env.globals.update(brand=brand, customer_service=customer_service)
        compiled: dict[str, _Compiled] = {}
        for path in sorted(templates_dir.glob("*/*.j2")):
            if path.name.startswith("_"):
                continue
            rel = path.relative_to(templates_dir).as_posix()
            compiled[rel] = _compile(env, templates_dir, rel)
        if not compiled:
            raise TemplateConfigError(f"templates directory {templates_dir} has no templates")
        renderer = cls(compiled, env, max_link_chars=max_link_chars)
        if (templates_dir / "voice").is_dir():
            from service.rendering.voice import VoiceScripts  # it builds on this module

            renderer.voice = VoiceScripts.load(
                templates_dir / "voice",
                brand=brand,
                customer_service=customer_service,
                renderer=renderer,
            )
        return renderer

    @property
    def template_files(self) -> tuple[str, ...]:
        return tuple(self._compiled)

    def check_covers(self, policy: Policy) -> None:
        """Raise TemplateConfigError listing every template the policy can plan but that is
        missing for a supported locale."""
        uses = set(policy.template_uses())
        calls = sorted(name for name, channel in uses if channel is Channel.VOICE)
        # Calls have their own scripts and no digest (a call is about one debt).
        uses = {(name, channel) for name, channel in uses if channel is not Channel.VOICE}
        if policy.contact.digest_window is not None:
            # A digest template for each channel the policy plans (not every channel there is).
            uses.update({(DIGEST_TEMPLATE, channel) for _, channel in uses})
        missing = [f"voice/{rel}" for rel in self.voice.missing(calls)] if self.voice else []
        if calls and self.voice is None:
            missing = [
                f"voice/{locale}/{name}.j2" for name in calls for locale in SUPPORTED_LOCALES
            ]
        missing += [
            template_file(locale, name, channel)
            for name, channel in sorted(uses)
            for locale in SUPPORTED_LOCALES
            if template_file(locale, name, channel) not in self._compiled
        ]
        if missing:
            raise TemplateConfigError(
                "templates the policy needs are missing: " + ", ".join(sorted(missing))
            )

    def render(
        self,
        event: LoanOverdueEvent,
        plan: PlannedNotification,
        *,
        locale: str,
        digest: DigestSummary | None = None,
    ) -> RenderedMessage:
        """One message; with `digest`, the digest template listing its loans (`event` is the
        first loan's: brand, currency, repayment path)."""
        if plan.channel is Channel.VOICE:
            if self.voice is None or digest is not None:
                raise RenderError("voice: no call scripts (templates/voice/), or a digest")
            return self.voice.render(event, plan, locale=locale)
        name = DIGEST_TEMPLATE if digest is not None else plan.template
        rel = template_file(locale, name, plan.channel)
        compiled = self._compiled.get(rel)
        if compiled is None:
            raise RenderError(f"template {rel} does not exist")
        variables = self.variables(event, plan, locale=locale)
        if digest is not None:
            variables["digest"] = {
                "count": len(digest.loans),
                "total": digest.total,
                "earliest_due_date": digest.earliest_due_date,
                "max_days_overdue": max(digest.max_days_past_due, 0),
                "loans": [
                    {
                        "id": loan.loan_id,
                        "amount_due": loan.amount_due,
                        "due_date": loan.due_date,
                        "days_overdue": max(loan.days_past_due, 0),
                    }
                    for loan in digest.loans
                ],
            }
        try:
            if plan.channel is Channel.SMS:
                text = compiled.template.render(variables).strip()
                encoding, parts = sms_parts(text)
                return RenderedMessage(
                    channel=plan.channel,
                    template=compiled.ref,
                    locale=locale,
                    sms=SmsContent(text=text, encoding=encoding, parts=parts),
                )
            context = compiled.template.new_context(variables)
            title, body = (
                "".join(compiled.template.blocks[b](context)).strip() for b in PUSH_BLOCKS
            )
        except Exception as exc:  # the sandbox and filters raise many types; all mean "broken"
            raise RenderError(f"template {rel}: {type(exc).__name__}: {exc}") from exc
        push = PushContent(
            title=title,
            body=body,
            deep_link=variables["deep_link"],
            data={
                "stage": plan.stage.value,
                "loan": mask_loan_id(event.loan.loan_id),
                "days_past_due": str(event.loan.days_past_due),
                "amount_due": format(event.loan.amount_due, "f"),
                "currency": event.loan.currency,
                "due_date": event.loan.due_date.isoformat(),
            },
        )
        size = push_payload_bytes(push)
        if size > FCM_MAX_PAYLOAD_BYTES:
            raise RenderError(f"template {rel}: push payload {size} bytes exceeds FCM's 4 KB")
        return RenderedMessage(
            channel=plan.channel, template=compiled.ref, locale=locale, push=push
        )

    def variables(
        self, event: LoanOverdueEvent, plan: PlannedNotification, *, locale: str
    ) -> dict[str, Any]:
        """The template context for one message (documented in TEMPLATE_VARIABLES)."""
        loan = event.loan
        dpd = loan.days_past_due
        url = event.repayment.url if event.repayment else None
        methods = list(event.repayment.methods) if event.repayment else []
        installment = (
            {"number": loan.installment.number, "total": loan.installment.total}
            if loan.installment
            else None
        )
        return {
            "locale": locale,
            "currency": loan.currency,
            "channel": plan.channel.value,
            "stage": plan.stage.value,
            "risk_level": event.risk_level.value,
            "loan": {
                "id": loan.loan_id,
                "product": loan.product,
                "amount_due": loan.amount_due,
                "principal": loan.principal,
                "interest": loan.interest,
                "penalty": loan.penalty,
                "currency": loan.currency,
                "due_date": loan.due_date,
                "days_past_due": dpd,
                "days_overdue": max(dpd, 0),
                "days_to_due": max(-dpd, 0),
                "installment": installment,
            },
            "borrower": {"name": event.borrower.name},
            "repay_url": url if url and len(url) <= self._max_link_chars else None,
            "repay_methods": methods,
            "deep_link": url,
            "digest": None,
        }


def _version(templates_dir: Path, rel: str) -> str:
    """Short sha256 of the template and the partials of its directory: the same text, the
    same version, so the audit trail shows exactly which wording went out."""
    digest = hashlib.sha256()
    path = templates_dir / rel
    for part in [path, *sorted(path.parent.glob("_*.j2"))]:
        digest.update(part.name.encode() + b"\0" + part.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def load_template(
    env: SandboxedEnvironment, directory: Path, rel: str, what: str = "template"
) -> tuple[Template, str]:
    """The compiled template `rel` of `directory` and its source; a TemplateConfigError naming
    it (`what` `rel`) when it cannot be read, does not compile or uses an unknown variable.
    The message templates' and the voice scripts' shared start-up check."""
    try:
        source = (directory / rel).read_text(encoding="utf-8")
        unknown = meta.find_undeclared_variables(env.parse(source)) - TEMPLATE_VARIABLES
        if unknown:
            raise TemplateConfigError(
                f"{what} {rel} uses unknown variables: {', '.join(sorted(unknown))}"
            )
        return env.get_template(rel), source
    except TemplateConfigError:
        raise
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" line {line}" if line else ""
        raise TemplateConfigError(f"{what} {rel}{where} is broken: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateConfigError(f"{what} {rel} cannot be read: {exc}") from None


def _compile(env: SandboxedEnvironment, templates_dir: Path, rel: str) -> _Compiled:
    template, _ = load_template(env, templates_dir, rel)
    # Jinja hands each template a ChainMap of its globals over the environment's, and every
    # render copies it key by key into a new context (~2.5% of the service's CPU in the bench
    # profile). The globals are all set before compiling and never change: one plain dict of
    # the same names and values.
    template.globals = dict(template.globals)
    if rel.endswith(f".{Channel.PUSH.value}.j2"):
        absent = [b for b in PUSH_BLOCKS if b not in template.blocks]
        if absent:
            raise TemplateConfigError(
                f"template {rel} is a push template without the block(s): {', '.join(absent)}"
            )
    return _Compiled(template, TemplateRef(name=rel, version=_version(templates_dir, rel)))
