"""Auction record sources: the Kaggle CSV loader and the synthetic generator.

Both return an *auction frame*: one row per auction with the listing columns
of :class:`gavel.schemas.Listing` plus ``sellingprice``, sorted by
``listed_at`` (UTC). See :mod:`producers.sources.frame`.
"""
