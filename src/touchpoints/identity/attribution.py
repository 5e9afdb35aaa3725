"""Which customer each event belongs to: the one rule every analysis uses.

An event belongs to the customer of its user id when identities know it, else of its
anonymous id. Events no build has seen yet (or before any build) fall back to their
user id, else their anonymous id, prefixed so they never collide with customer ids.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise


def with_customer(
    events: ir.Table, identities: ir.Table, config: IdentityConfig | None = None
) -> ir.Table:
    """`events` plus a `customer_id` column, by the rule in the module docstring."""
    config = config or IdentityConfig()
    user_node = "user_id:" + normalise("user_id", events.user_id, config)
    anon_node = "anonymous_id:" + normalise("anonymous_id", events.anonymous_id, config)
    keyed = events.mutate(_user_node=user_node, _anon_node=anon_node)
    by_user = identities.select(_u=identities.identifier, _u_customer=identities.customer_id)
    by_anon = identities.select(_a=identities.identifier, _a_customer=identities.customer_id)
    joined = keyed.left_join(by_user, keyed._user_node == by_user._u).left_join(
        by_anon, keyed._anon_node == by_anon._a
    )
    customer = ibis.coalesce(
        joined._u_customer,
        joined._a_customer,
        "user:" + joined.user_id,
        "anon:" + joined.anonymous_id,
    )
    return joined.mutate(customer_id=customer).drop(
        "_user_node", "_anon_node", "_u", "_u_customer", "_a", "_a_customer"
    )
