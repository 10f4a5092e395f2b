"""Content lint (`overdue-notifier templates check`): render every template the policy can plan
against a matrix of awkward events and report what a borrower or a regulator would object to.

Uses policy and rendering; nothing else imports it except the CLI and CI.
"""

from service.lint.checks import Finding, LintReport, check_message, lint_templates
from service.lint.matrix import LintCase, lint_cases

__all__ = ["Finding", "LintCase", "LintReport", "check_message", "lint_cases", "lint_templates"]
