"""Examples: reading files, normalizing formats, validation, labeling, splits, versions, export."""
