"""Catalog: products, categories, stock and its reservations, CSV import jobs."""

from bazaar.platform.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="catalog", routes=("/v1/products", "/v1/categories", "/v1/jobs"), database="catalog"
)
