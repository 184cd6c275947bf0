# todo/models.py
import uuid

from django.db import models

from django_cqrs.aggregates import Aggregate
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.read_models import ReadModel

from .events import TaskAdded, TaskCompleted


class Task(Aggregate):
    """Write side: guards its rules and records what happened."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)

    @classmethod
    def add(cls, title: str) -> "Task":
        task = cls(title=title)
        task.record_event(TaskAdded(task_id=task.id, title=title))
        return task

    def complete(self) -> None:
        if self.done:
            raise InvariantViolationError("the task is already done")
        self.done = True
        self.record_event(TaskCompleted(task_id=self.id))

    def check_title_present(self) -> None:  # save() runs every check_* method
        if not self.title.strip():
            raise InvariantViolationError("a task needs a title", field="title")


class TaskView(ReadModel):
    """Read side: one display-ready row per task, written only by its projection."""

    id = models.UUIDField(primary_key=True)
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=10, db_index=True)  # "open" or "done"
    added_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True)
