from django.apps import AppConfig


class TodoConfig(AppConfig):
    """Installed as ``todo``, the app label the README's tutorial uses."""

    name = "tests.tutorial"
    label = "todo"
    default_auto_field = "django.db.models.BigAutoField"
