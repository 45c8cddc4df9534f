"""sift's JSON API: a FastAPI app over `search.engine.Sift`."""

from sift.api.app import create_app

__all__ = ["create_app"]
