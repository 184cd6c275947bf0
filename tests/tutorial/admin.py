# todo/admin.py
from django.contrib import admin

from django_cqrs.admin import AggregateAdmin, ReadModelAdmin

from .models import Task, TaskView

admin.site.register(TaskView, ReadModelAdmin)  # read-only: every column, search, filters
admin.site.register(Task, AggregateAdmin)  # read-only: version, fields and events
