# todo/queries.py
from dataclasses import dataclass

from django_cqrs import Query

from .models import TaskView


@dataclass(frozen=True)
class ListTasks(Query[list[TaskView]]):
    status: str | None = None  # "open", "done", or None for all
