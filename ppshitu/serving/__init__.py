"""The recognition service: FastAPI app + uvicorn (deploy/serve.py is its command line).

    from ppshitu.serving import Service, Settings, create_app, serve
    service = Service.from_config(cfg, Settings(token="...")).start()   # models load on their threads
    serve(service)                                                      # blocks

See app.py for the routes (and its layers: routers/, dependencies.py, models.py, bodies.py), service.py
for what each request does and which thread owns what, protocol.py for the connection guards,
settings.py for every limit.
"""
from .app import create_app
from .server import serve, serve_in_thread
from .service import Service
from .settings import Settings

__all__ = ["Service", "Settings", "create_app", "serve", "serve_in_thread"]
