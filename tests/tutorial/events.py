# todo/events.py
from dataclasses import dataclass
from uuid import UUID

from django_cqrs import Event


@dataclass(frozen=True)
class TaskAdded(Event, name="todo.TaskAdded"):  # name: stored in the log, keep it stable
    task_id: UUID
    title: str


@dataclass(frozen=True)
class TaskCompleted(Event, name="todo.TaskCompleted"):
    task_id: UUID
