"""Notifications: in-app notifications, emails, and signed webhooks with their deliveries."""

from bazaar.platform.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="notifications", routes=("/v1/notifications", "/v1/webhooks"), database="notifications"
)
