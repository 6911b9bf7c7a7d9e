"""Networks, model cards, loading and inference."""
