"""sift's JSON API: a FastAPI app over `sift.search.engine.Sift`."""

from sift.api.app import create_app

__all__ = ["create_app"]
