"""Entities: the customer, joined on `customer_id`."""

from feast import Entity, ValueType

from features.catalog import ENTITY_KEY

customer = Entity(
    name="customer",
    join_keys=[ENTITY_KEY],
    value_type=ValueType.STRING,
    description="A customer of the business, identified by the contract's customer_id.",
)
