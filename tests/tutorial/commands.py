# todo/commands.py
from dataclasses import dataclass
from uuid import UUID

from django_cqrs import Command


@dataclass(frozen=True)
class AddTask(Command[UUID]):  # Command[R]: the handler returns an R
    title: str


@dataclass(frozen=True)
class CompleteTask(Command[None]):
    task_id: UUID
