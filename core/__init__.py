"""Vigil's engine: imaging, models, explanations, store, audit and services.

``core`` never imports Streamlit; pages and ``ui`` render what ``core.services`` returns.
"""

__version__ = "0.1.0"
