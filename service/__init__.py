"""overdue-notifier: loan repayment reminders from Kafka events, compliant by construction."""

__version__ = "0.1.0"
