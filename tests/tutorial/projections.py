# todo/projections.py
from django_cqrs.events import EventEnvelope
from django_cqrs.projections import Projection, handles

from .events import TaskAdded, TaskCompleted
from .models import TaskView


class TaskViewProjection(Projection):  # named "todo.TaskViewProjection"
    read_models = [TaskView]
    mode = "sync"  # applied inside the command's transaction

    @handles(TaskAdded)
    def added(self, event: TaskAdded, envelope: EventEnvelope) -> None:
        self.put(
            TaskView(
                id=event.task_id,
                title=event.title,
                status="open",
                added_at=envelope.recorded_at,
            )
        )

    @handles(TaskCompleted)
    def completed(self, event: TaskCompleted, envelope: EventEnvelope) -> None:
        view = self.get(TaskView, event.task_id)
        view.status = "done"
        view.completed_at = envelope.recorded_at
        self.put(view)
