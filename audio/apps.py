from django.apps import AppConfig


class AudioConfig(AppConfig):
    name = "audio"
    default_auto_field = "django.db.models.BigAutoField"
