"""Thin adapters: a platform's event -> ``service.Request``; ``service.Response`` -> its reply."""
