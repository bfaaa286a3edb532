"""The HTTP API (FastAPI): routers per resource over the application and read models."""
