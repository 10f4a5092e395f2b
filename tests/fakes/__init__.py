"""Fake provider peers: real local servers speaking each provider's protocol, started on port 0."""
