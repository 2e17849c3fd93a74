"""Services: one SQL concern each, taking a connection and a definition, returning a response."""

from .create import create_view
from .delete import delete_view
from .refresh import refresh_view
from .response import ServiceResponse
from .row_count import count_rows
from .swap import drop_swap_leftovers

__all__ = [
    "ServiceResponse",
    "count_rows",
    "create_view",
    "delete_view",
    "drop_swap_leftovers",
    "refresh_view",
]
