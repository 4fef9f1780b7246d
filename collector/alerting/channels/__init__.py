"""Notification channels, each behind the small `Notifier` interface."""
