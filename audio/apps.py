from django.apps import AppConfig


class AudioConfig(AppConfig):
    name = "audio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audio import routes
        from providers.routes import kinds

        kinds.register("speech", routes.SPEECH)
        kinds.register("transcription", routes.TRANSCRIPTION)
