"""The Streamlit layer: the only importable package that imports streamlit.

``resources`` holds process-wide cached objects (settings, session factories, the model and its
lock), ``cached`` the per-data-version caches around ``core.services`` queries, ``auth`` and
``state`` what a browser session remembers, ``navigation`` the role-filtered page list, and
``components`` the ``render_*``-style functions pages call.
"""
