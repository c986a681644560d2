"""Data: row formats, file loaders, and (data stage) inspection, cleaning and mixing."""
