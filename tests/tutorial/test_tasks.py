# todo/test_tasks.py
import uuid
from datetime import timedelta

import pytest

from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.testing import ANY, CommandScenario, FrozenClock, ProjectionScenario, events_of

from .commands import AddTask, CompleteTask
from .events import TaskAdded, TaskCompleted
from .models import Task, TaskView

pytestmark = pytest.mark.django_db  # each test in a transaction, rolled back after it


def test_adding_a_task_records_task_added() -> None:
    outcome = CommandScenario().when(AddTask(title="Buy milk"))

    outcome.then_events(TaskAdded(task_id=ANY, title="Buy milk"))  # ANY: an id made inside
    assert Task.objects.get(pk=outcome.value).title == "Buy milk"


def test_a_task_is_completed_once() -> None:
    scenario = CommandScenario().given(AddTask(title="Buy milk"))
    milk = scenario.value  # what the given command returned

    scenario.when(CompleteTask(task_id=milk)).then_events(TaskCompleted(task_id=milk))
    scenario.when(CompleteTask(task_id=milk)).then_error(
        InvariantViolationError, match="already done"
    )  # ... and it wrote nothing: no row, no event, no read-model change


def test_a_blank_title_is_refused() -> None:
    outcome = CommandScenario().when(AddTask(title="   "))

    outcome.then_error(InvariantViolationError, match="needs a title")


def test_the_view_shows_when_a_task_was_added_and_done(clock: FrozenClock) -> None:
    task_id, added = uuid.uuid4(), clock.now()  # clock: time stands still until moved
    scenario = ProjectionScenario("todo.TaskViewProjection").given(
        events_of(Task, task_id, TaskAdded(task_id=task_id, title="Buy milk")),
        lambda: clock.advance(minutes=5),
        events_of(Task, task_id, TaskCompleted(task_id=task_id)),
    )

    scenario.then_rows(
        TaskView,
        [
            {
                "id": task_id,
                "status": "done",
                "added_at": added,
                "completed_at": added + timedelta(minutes=5),
            }
        ],
    )  # and the same rows after a rebuild from the log
