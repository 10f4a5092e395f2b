"""The campaign simulator: a month of loan events through a candidate policy on a simulated
clock, with the service's own planning, ledger and scheduler, and an independent check that
every contact rule held. `overdue-notifier simulate` (service/cli/simulate.py) is its command."""
