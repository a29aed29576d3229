"""Catalog: products, categories, stock and its reservations, CSV import jobs."""
