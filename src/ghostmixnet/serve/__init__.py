"""The classification service: a FastAPI app (the optional extra ``serve``) with its web page."""
