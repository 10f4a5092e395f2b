"""The policy file: its schema (pydantic), validation, and loading.

A lender tunes stages, channels, cadence, contact rules and the content lint here, without a
code change. The file is read once at start; a bad file stops the service with `PolicyError`
naming the key and the reason. `default_policy.yaml` next to this module is the shipped default.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import date, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from service.errors import ConfigError
from service.events import Channel, RiskLevel
from service.policy.model import CallCaps, ContactRules, ContactWindow, FrequencyCaps, Stage
from service.validation import validation_errors

__all__ = [
    "ChannelRule",
    "LintRules",
    "Policy",
    "PolicyError",
    "RiskRule",
    "StageRule",
    "load_policy",
    "template_name",
]

DEFAULT_POLICY_RESOURCE = "default_policy.yaml"


class PolicyError(ConfigError):
    """The policy file cannot be used; the message names the file, the key and the reason."""

    variable = "NOTIFIER_POLICY_FILE"
    fix = "point it at a readable, valid policy YAML, or unset it for the shipped policy"


class _Strict(BaseModel):
    # A misspelt key is a silent policy change; refuse it instead.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _channel_shorthand(value: Any) -> Any:
    # `- sms` is the common case; `- {channel: sms, days: [-1, -1]}` restricts it to some days.
    return {"channel": value} if isinstance(value, str) else value


class ChannelRule(_Strict):
    channel: Channel
    days: tuple[int, int] | None = Field(
        None, description="Inclusive days-past-due range inside the stage; absent: the whole stage"
    )
    template: str | None = Field(None, min_length=1, description="Overrides the stage template")

    @model_validator(mode="after")
    def _ordered(self) -> ChannelRule:
        if self.channel is Channel.VOICE:
            # The Twilio Voice adapter exists; planning, caps and rendering of calls do not yet.
            raise ValueError("channel voice is not supported in the policy yet")
        if self.days is not None and self.days[0] > self.days[1]:
            raise ValueError(f"days {list(self.days)}: the first day is after the last")
        return self


class RiskRule(_Strict):
    channels: tuple[Annotated[ChannelRule, BeforeValidator(_channel_shorthand)], ...]
    cadence_days: int = Field(ge=1, le=365, description="Minimum days between contacts")
    priority: int | None = Field(None, ge=0, le=100, description="Overrides the stage priority")
    template: str | None = Field(None, min_length=1, description="Overrides the stage template")
    handoff: bool = Field(
        False,
        description="Also hand the loan to a human collector: one collector task per loan and "
        "local day on the tasks topic (docs/policy.md)",
    )

    @model_validator(mode="after")
    def _unique_channels(self) -> RiskRule:
        seen = [c.channel for c in self.channels]
        dupes = sorted({c.value for c in seen if seen.count(c) > 1})
        if dupes:
            # The idempotency key is event + channel + stage: one entry per channel.
            raise ValueError(f"channel listed twice: {', '.join(dupes)}")
        return self


class StageRule(_Strict):
    days: tuple[int, int | None] = Field(
        description="Inclusive days-past-due range [first, last]; last null = open-ended"
    )
    template: str | None = Field(None, min_length=1, description="Template name; default: stage")
    priority: int = Field(ge=0, le=100, description="Higher is more urgent")
    risk: dict[RiskLevel, RiskRule]
    push_ttl: timedelta | None = Field(
        None,
        gt=timedelta(0),
        le=timedelta(days=10),
        description="How long a push of this stage may wait for an offline device (ISO 8601, "
        "e.g. PT4H); absent: until the end of that local day's contact window",
    )

    @model_validator(mode="after")
    def _valid(self) -> StageRule:
        first, last = self.days
        if last is not None and first > last:
            raise ValueError(f"days {[first, last]}: the first day is after the last")
        missing = [r.value for r in RiskLevel if r not in self.risk]
        if missing:
            raise ValueError(f"risk levels missing: {', '.join(missing)}")
        for level, rule in self.risk.items():
            for ch in rule.channels:
                if ch.days is None:
                    continue
                inside = ch.days[0] >= first and (last is None or ch.days[1] <= last)
                if not inside:
                    raise ValueError(
                        f"risk.{level.value}: {ch.channel.value} days {list(ch.days)} lie "
                        f"outside the stage's days {[first, last]}"
                    )
        return self

    def contains(self, days_past_due: int) -> bool:
        first, last = self.days
        return days_past_due >= first and (last is None or days_past_due <= last)


class WindowModel(_Strict):
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> WindowModel:
        if self.start >= self.end:
            raise ValueError("start must be before end (overnight windows are not supported)")
        return self

    def to_window(self) -> ContactWindow:
        return ContactWindow(start=self.start, end=self.end)


class CapsModel(_Strict):
    sms_per_local_day: int = Field(2, ge=0)
    contacts_per_rolling_7_days: int = Field(7, ge=0)

    def to_caps(self) -> FrequencyCaps:
        return FrequencyCaps(self.sms_per_local_day, self.contacts_per_rolling_7_days)


class CallCapsModel(_Strict):
    per_debt_rolling_7_days: int = Field(
        7, ge=0, description="Calls about one loan in any rolling 7 days (Reg F: 7)"
    )
    unanswered_per_local_day: int = Field(
        6, ge=0, description="Unanswered call attempts per borrower and local day (CBA: 6)"
    )

    def to_caps(self) -> CallCaps:
        return CallCaps(self.per_debt_rolling_7_days, self.unanswered_per_local_day)


class ContactModel(_Strict):
    window: WindowModel = WindowModel(start=time(8, 0), end=time(21, 0))
    region_windows: dict[str, WindowModel] = {}
    caps: CapsModel = CapsModel()
    stage_caps: dict[Stage, CapsModel] = {}
    holidays: tuple[date, ...] = ()
    max_defer: timedelta = Field(timedelta(days=2), gt=timedelta(0))
    call_caps: CallCapsModel = CallCapsModel()
    # Digest: a borrower's notifications due in the same slot of this length (aligned to the
    # clock, e.g. PT15M: :00, :15, ...) on one channel and stage group go out as one message.
    digest_window: timedelta | None = Field(None, gt=timedelta(0), le=timedelta(hours=6))


class LintRules(_Strict):
    """Rules of `overdue-notifier templates check` (content, not delivery)."""

    max_sms_parts: dict[str, int] = Field(
        default_factory=lambda: {"zh-CN": 2, "en-US": 3},
        description="Per locale: the most SMS parts a rendered message may take",
    )
    forbidden_words: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Per locale: words no rendered message may contain"
    )
    repayment_markers: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {"zh-CN": ("App",), "en-US": ("app", "App")},
        description="Per locale: words that show a repayment path when no link is printed",
    )
    voice_max_seconds: float = Field(
        60, gt=0, le=600, description="Longest estimated spoken length of a call script"
    )
    voice_limited_max_seconds: float = Field(
        20, gt=0, le=120, description="Longest estimated spoken length of a machine message"
    )
    voice_chars_per_second: dict[str, float] = Field(
        # Text-to-speech at a normal rate: Mandarin ~4.5 characters a second, English ~150
        # words a minute (~14 characters a second, spaces and punctuation included).
        default_factory=lambda: {"zh-CN": 4.5, "en-US": 14.0},
        description="Per locale: characters spoken per second, to estimate a script's length",
    )

    @model_validator(mode="after")
    def _positive_parts(self) -> LintRules:
        bad = sorted(k for k, v in self.max_sms_parts.items() if v < 1)
        if bad:
            raise ValueError(f"max_sms_parts must be at least 1 (locale {', '.join(bad)})")
        return self


def template_name(stage: Stage, rule: StageRule, risk: RiskRule, channel: ChannelRule) -> str:
    """The template a channel rule sends: its own, else its risk rule's, else its stage rule's,
    else the stage's name."""
    return channel.template or risk.template or rule.template or stage.value


class Policy(_Strict):
    """The whole policy file. `stages` keep the file's order; their day ranges never overlap."""

    version: int = Field(1, ge=1, le=1)
    stages: dict[Stage, StageRule]
    preferred_time_stages: tuple[Stage, ...] = (Stage.PRE_DUE, Stage.DUE_TODAY, Stage.GRACE)
    # The YAML key is `contact`; the attribute of that name is the frozen ContactRules below.
    contact_section: ContactModel = Field(ContactModel(), alias="contact")
    lint: LintRules = LintRules()

    @model_validator(mode="after")
    def _no_overlap(self) -> Policy:
        ordered = sorted(self.stages.items(), key=lambda kv: kv[1].days[0])
        for (name_a, a), (name_b, b) in itertools.pairwise(ordered):
            last_a = a.days[1]
            if last_a is None or last_a >= b.days[0]:
                raise ValueError(
                    f"stages {name_a.value} and {name_b.value} overlap "
                    f"({list(a.days)} and {list(b.days)})"
                )
        return self

    @property
    def contact(self) -> ContactRules:
        """The contact section as the frozen value the ledger and compliance enforce."""
        c = self.contact_section
        return ContactRules(
            window=c.window.to_window(),
            region_windows={k: w.to_window() for k, w in c.region_windows.items()},
            caps=c.caps.to_caps(),
            stage_caps={s: caps.to_caps() for s, caps in c.stage_caps.items()},
            holidays=frozenset(c.holidays),
            max_defer=c.max_defer,
            call_caps=c.call_caps.to_caps(),
            digest_window=c.digest_window,
        )

    def stage_for(self, days_past_due: int) -> Stage | None:
        """The stage whose day range holds `days_past_due`, or None (nothing to send)."""
        for stage, rule in self.stages.items():
            if rule.contains(days_past_due):
                return stage
        return None

    def template_uses(self) -> Iterator[tuple[str, Channel]]:
        """Every (template name, channel) pair some rule can plan, each once."""
        seen: set[tuple[str, Channel]] = set()
        for stage, rule in self.stages.items():
            for risk in rule.risk.values():
                for ch in risk.channels:
                    name = template_name(stage, rule, risk, ch)
                    if (name, ch.channel) not in seen:
                        seen.add((name, ch.channel))
                        yield name, ch.channel


def _describe(source: str, exc: ValidationError) -> str:
    lines = [f"policy {source} is invalid:"]
    for location, msg in validation_errors(exc, root="(top level)"):
        lines.append(f"  {location}: {msg.removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_policy(data: Mapping[str, Any] | None, *, source: str = "<memory>") -> Policy:
    """Validate already-parsed YAML data; `source` names it in the error."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy {source} is invalid:\n  (top level): expected a mapping")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(source, exc)) from None


def load_policy(path: Path | None) -> Policy:
    """Read and validate a policy file; None reads the default shipped with the service."""
    if path is None:
        source = f"(default) {DEFAULT_POLICY_RESOURCE}"
        text = (
            resources.files("service.policy").joinpath(DEFAULT_POLICY_RESOURCE).read_text("utf-8")
        )
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"policy {source} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise PolicyError(f"policy {source} is not valid YAML{where}: {problem}") from None
    return parse_policy(data, source=source)
