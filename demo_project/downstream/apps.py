from django.apps import AppConfig


class DownstreamConfig(AppConfig):
    name = "demo_project.downstream"
    label = "downstream"
    verbose_name = "Downstream: orders seen from another service"
    default_auto_field = "django.db.models.BigAutoField"
