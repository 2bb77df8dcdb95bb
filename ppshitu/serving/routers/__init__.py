"""The service's routes, one APIRouter per resource (app.create_app includes them):

    page.py         GET /, GET /static/{name}          the web page (not in the API description)
    health.py       GET /health
    recognition.py  POST /predict
    search.py       POST /search
    gallery.py      /api/labels, /api/items, /api/compact: the gallery's classes and items, read and written
    doctor.py       GET /api/gallery/doctor, GET /doctor   the gallery doctor's report (JSON) and its page

A route only reads its input (bodies.py, query and path parameters), calls the service (service.py)
and answers in its response model (models.py); its checks are dependencies (dependencies.py).
"""
from . import doctor, gallery, health, page, recognition, search

ROUTERS = (page.router, health.router, recognition.router, search.router, gallery.router, doctor.router)
