"""Render functions: take ``core.services`` dataclasses, emit ``st.*`` calls, return what the reader chose."""
