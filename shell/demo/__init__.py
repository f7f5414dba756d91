"""`gavel demo`: the product end to end on the local stack."""
