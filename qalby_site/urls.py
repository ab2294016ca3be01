from django.contrib import admin
from django.urls import path

from qalby_site.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", api.urls),
]

# Errors outside the API's own handlers: JSON, and 503 for an unreachable database (qalby_site/middleware.py).
handler500 = "qalby_site.middleware.server_error"
