"""Notifications: in-app notifications, emails, and signed webhooks with their deliveries."""
