"""A FastAPI example service built on veo-async (see ``app.py`` and ``README.md``)."""
