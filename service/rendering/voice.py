"""Voice scripts: what an automated call says, per stage and locale.

Templates live in `templates/voice/<locale>/<stage>.j2`, each with two blocks: `script`, said
to the borrower in person, and `limited`, the limited-content message an answering machine
gets (who is calling and a number to call back, never debt details). They use the same
variables and filters as SMS and push (service.rendering.renderer.TEMPLATE_VARIABLES) and are
linted by service/lint/voice.py (required content, forbidden words, spoken length).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

from service.events import Channel, LoanOverdueEvent, TemplateRef
from service.policy.model import PlannedNotification, Stage
from service.rendering.filters import FILTERS
from service.rendering.model import RenderedMessage, VoiceContent
from service.rendering.renderer import (
    SUPPORTED_LOCALES,
    Renderer,
    RenderError,
    TemplateConfigError,
    load_template,
)

__all__ = ["VOICE_BLOCKS", "VoiceScripts", "voice_template_file"]

VOICE_BLOCKS = ("script", "limited")


def voice_template_file(locale: str, stage: Stage | str) -> str:
    name = stage.value if isinstance(stage, Stage) else stage
    return f"{locale}/{name}.j2"


@dataclass(frozen=True, slots=True)
class _Script:
    template: Template
    ref: TemplateRef


class VoiceScripts:
    """Compiled voice templates; `render` is pure (the SMS renderer supplies the variables)."""

    def __init__(self, compiled: Mapping[str, _Script], variables: Renderer) -> None:
        self._compiled = dict(compiled)
        self._variables = variables

    @classmethod
    def load(
        cls, voice_dir: Path, *, brand: str, customer_service: str, renderer: Renderer
    ) -> VoiceScripts:
        if not voice_dir.is_dir():
            raise TemplateConfigError(f"voice templates directory {voice_dir} does not exist")
        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(voice_dir)),
            undefined=StrictUndefined,
            autoescape=False,  # spoken text; the adapter escapes it for TwiML
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(FILTERS)
        env.globals.update(brand=brand, customer_service=customer_service)
        compiled: dict[str, _Script] = {}
        for path in sorted(voice_dir.glob("*/*.j2")):
            if path.name.startswith("_"):
                continue
            rel = path.relative_to(voice_dir).as_posix()
            compiled[rel] = _compile(env, voice_dir, rel)
        return cls(compiled, renderer)

    @property
    def template_files(self) -> tuple[str, ...]:
        return tuple(self._compiled)

    def missing(self, stages: Sequence[Stage | str]) -> list[str]:
        """Voice templates the given stages (template names) need in every supported locale
        and lack."""
        return [
            voice_template_file(locale, stage)
            for stage in stages
            for locale in SUPPORTED_LOCALES
            if voice_template_file(locale, stage) not in self._compiled
        ]

    def render(
        self, event: LoanOverdueEvent, plan: PlannedNotification, *, locale: str
    ) -> RenderedMessage:
        rel = voice_template_file(locale, plan.template)
        compiled = self._compiled.get(rel)
        if compiled is None:
            raise RenderError(f"voice template {rel} does not exist")
        variables = self._variables.variables(event, plan, locale=locale)
        try:
            context = compiled.template.new_context(variables)
            script, limited = (
                " ".join("".join(compiled.template.blocks[b](context)).split())
                for b in VOICE_BLOCKS
            )
        except Exception as exc:  # the sandbox and filters raise many types; all mean "broken"
            raise RenderError(f"voice template {rel}: {type(exc).__name__}: {exc}") from exc
        return RenderedMessage(
            channel=Channel.VOICE,
            template=compiled.ref,
            locale=locale,
            voice=VoiceContent(script=script, limited_script=limited, language=locale),
        )


def _compile(env: SandboxedEnvironment, voice_dir: Path, rel: str) -> _Script:
    template, source = load_template(env, voice_dir, rel, "voice template")
    absent = [b for b in VOICE_BLOCKS if b not in template.blocks]
    if absent:
        raise TemplateConfigError(f"voice template {rel} lacks the block(s): {', '.join(absent)}")
    version = hashlib.sha256(source.encode()).hexdigest()[:12]
    return _Script(template, TemplateRef(name=f"voice/{rel}", version=version))
