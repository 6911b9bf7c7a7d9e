"""Use cases: the only layer that combines subpackages and owns transactions.

Every public function here is one user action: it opens one transaction (or one per
batch, for long work), writes its rows and their audit entries together, and returns
frozen dataclasses that are safe to keep across Streamlit reruns.
"""
