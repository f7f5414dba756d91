"""What text means "unknown": shared by the loaders, the model's features and the market
memory, so that all of them read a listing's text alike.

>>> sorted(value for value in (" — ", "None", "Ford") if value.strip().lower() in MISSING_TEXT)
[' — ', 'None']
"""

from __future__ import annotations

MISSING_TEXT: frozenset[str] = frozenset({"", "\u2014", "\u2013", "-", "nan", "none", "null"})
"""Text that means "unknown" once stripped and lower-cased: nothing, a dash (em dash, en
dash or hyphen) or a spelled-out missing value."""
