"""The webhook port is its own: configuring it onto the metrics port is refused at start."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_config_check_refuses_webhooks_on_the_metrics_port() -> None:
    """NOTIFIER_RECEIPTS_HTTP_PORT equal to NOTIFIER_HTTP_PORT fails, naming both variables."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "config", "check"],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "NOTIFIER_HTTP_PORT": "8080",
            "NOTIFIER_RECEIPTS_HTTP_PORT": "8080",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "NOTIFIER_RECEIPTS_HTTP_PORT" in done.stderr
    assert "NOTIFIER_HTTP_PORT" in done.stderr
