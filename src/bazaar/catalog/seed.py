"""Generated products for trying Bazaar out and for load tests: `bazaar seed --products N`.

Rows go in with bulk Core inserts, a few batches per transaction. No `product.updated` events
are recorded: the products are new, so no cache holds them, and a hundred thousand events
would only keep the relay busy.
"""

import random
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, text

from bazaar.catalog.models import Product
from bazaar.catalog.service import use_categories
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database
from bazaar.platform.ids import new_id

CATEGORIES = (
    "books", "electronics", "garden", "grocery", "home", "kitchen",
    "music", "office", "outdoors", "sports", "tools", "toys",
)  # fmt: skip
ADJECTIVES = (
    "Agile", "Bold", "Classic", "Compact", "Deluxe", "Eco", "Fresh", "Handy",
    "Lucky", "Modern", "Quiet", "Rapid", "Sturdy", "Sunny", "Trusty", "Vivid",
)  # fmt: skip
NOUNS = (
    "Backpack", "Blender", "Bottle", "Candle", "Chair", "Kettle", "Lamp", "Mug",
    "Notebook", "Pillow", "Puzzle", "Racket", "Speaker", "Teapot", "Torch", "Wrench",
)  # fmt: skip


async def seed_products(
    db: Database,
    count: int,
    *,
    batch_size: int = 5000,
    batches_per_transaction: int = 5,
    on_progress: Callable[[int], None] = lambda _done: None,
    seed: int | None = None,
) -> int:
    """Insert `count` generated products; returns how many. Skus carry a random run token, so
    a second run never collides with the first."""
    rng = random.Random(seed)
    run = secrets.token_hex(4).upper()
    done = 0
    async with db.write() as session:
        await use_categories(session, CATEGORIES)
    while done < count:
        async with db.write() as session:
            for _ in range(batches_per_transaction):
                size = min(batch_size, count - done)
                if size <= 0:
                    break
                rows = [_product(rng, run, done + offset) for offset in range(size)]
                await session.execute(insert(Product), rows)
                done += size
                on_progress(size)
    async with db.write() as session:
        # Fresh statistics, or the planner guesses from an empty table (a sort of every row
        # for a first page instead of a walk of the primary key). SQLite plans without them.
        await session.execute(text("ANALYZE product" if db.dialect == "postgresql" else "ANALYZE"))
    return done


def _product(rng: random.Random, run: str, number: int) -> dict[str, Any]:
    now = utcnow()
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {number}"
    return {
        "id": new_id(),
        "sku": f"SEED-{run}-{number:07d}",
        "name": name,
        "description": f"A generated product: the {name.lower()}.",
        "category": rng.choice(CATEGORIES),
        "price_amount": rng.randrange(100, 100_000),
        "currency": "USD",
        "stock": rng.randrange(0, 500),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }
