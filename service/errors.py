"""Every error the service raises on purpose, in one tree (the way httpx/_exceptions.py draws its
own). Each room defines its branch; the drawing below is the whole of it, and
tests/test_error_tree.py checks the classes against it, edge by edge.

* NotifierError                       service.errors: the root; `run` catches it at start-up
  x ConfigError                       service.errors: the configuration is wrong (exit 2); names
  |                                   the `variable` to fix and a `fix`
  |  + PolicyError                    service.policy.config: the policy file
  |  + TemplateConfigError            service.rendering.renderer: the templates directory
  |  + MissingCodecError              service.pipeline.kafka_clients: the image lacks a codec
  x StartupError                      service.settings_check: valid configuration, but its
  |                                   environment refused the start (exit 3)
  x KafkaSecurityError                service.kafka_security: TLS/SASL cannot work (exit 3)
  x ProviderError                     service.channels.errors: a provider refused or failed a send
  |  + TransientProviderError         service.channels.errors: retried (5xx, throttled, refused
  |  |                                connect): nothing was accepted
  |  + AmbiguousProviderError         service.channels.errors: may have been accepted: never
  |  |                                resent silently, `unknown`
  |  + PermanentProviderError         service.channels.errors: retrying cannot help
  |     - RecipientRefused            service.channels.errors: about the recipient: the same at
  |     |                             every provider, so no failover
  |     |  . RecipientOptedOut        service.channels.errors: the recipient told the provider
  |     |                             to stop: the ledger records an opt-out
  |     |  . TokenUnregistered        service.channels.errors: the push token is gone: the
  |     |                             result says `token_unregistered`, upstream drops it
  |     - ProviderMisconfigured       service.channels.errors: our side (credentials, sender
  |                                   id): logged at ERROR, a circuit failure, fails over
  x LedgerError                       service.ledger.errors: the ledger cannot do what was asked
     + LedgerUnavailableError         service.ledger.errors: unreachable now: retry, send nothing
     |  - ClaimLostError              service.ledger.errors: the claim ran out before the
     |                                attempt: send nothing, retry the event
     + SchemaOutOfDateError           service.ledger.errors: run `overdue-notifier db upgrade`

Decisions are `except` clauses on these types, never flags on an exception: the dispatcher
retries `TransientProviderError` only, fails over after `ProviderMisconfigured` (and transient
trouble), never after `RecipientRefused` or an ambiguous send; the outcome's reason follows the
type (`opted_out_by_provider`, `token_unregistered`, `provider_config_error`,
`provider_rejected`). Context is keyword-only and never carries personal data.

**Decision:** `ConfigError` and `KafkaSecurityError` are also `ValueError`s, as the errors they
replace were: pydantic validators and `config check` catch `ValueError`, and must go on catching
these. Errors outside the tree (a bare `OSError`, `ValueError`, ...) are bugs, or races after
`config check` passed; `run` reports them with their traceback (exit 1) rather than guess.
"""

from __future__ import annotations

__all__ = ["ConfigError", "NotifierError"]


class NotifierError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigError(NotifierError, ValueError):
    """The configuration cannot work. `variable` names the setting, `fix` says what to do.

    A subclass about one setting names it (and its usual fix) as class attributes; the keyword
    arguments override them.
    """

    variable: str = "NOTIFIER_*"
    fix: str = "see the message"

    def __init__(
        self, message: str, *, variable: str | None = None, fix: str | None = None
    ) -> None:
        super().__init__(message)
        self.variable = variable or type(self).variable
        self.fix = fix or type(self).fix
