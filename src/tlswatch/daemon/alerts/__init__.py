"""Alerts: rules (pure), message templates, the persisted outbox and its delivery."""
