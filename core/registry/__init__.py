"""Model versions as content-addressed records, change-control plans and their gate, deployment history (pure)."""
