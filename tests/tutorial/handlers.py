# todo/handlers.py
from uuid import UUID

from django_cqrs import command_handler, query_handler

from .commands import AddTask, CompleteTask
from .models import Task, TaskView
from .queries import ListTasks


@command_handler(AddTask)
def add_task(command: AddTask) -> UUID:
    task = Task.add(command.title)
    task.save()  # invariants, version check, events appended, sync projections run
    return task.id


@command_handler(CompleteTask)
def complete_task(command: CompleteTask) -> None:
    task = Task.load(command.task_id)  # AggregateNotFoundError if there is none
    task.complete()
    task.save()


@query_handler(ListTasks)
def list_tasks(query: ListTasks) -> list[TaskView]:
    views = TaskView.objects.order_by("added_at")
    if query.status:
        views = views.filter(status=query.status)
    return list(views)
