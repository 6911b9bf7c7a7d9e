"""Federated training across hospital sites on Flower: site task, Flower apps, integrity, local launcher."""
