from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "agent"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agent import routes
        from providers.routes import kinds

        kinds.register("chat", routes.KIND)
