"""The downstream service's one page: its read model, and its inbox's state."""

from __future__ import annotations

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_cqrs.models import InboxMessage

from .models import CustomerOrders, OrderFeedEntry


def home(request: HttpRequest) -> HttpResponse:
    inbox = dict(InboxMessage.objects.order_by().values_list("state").annotate(n=Count("id")))
    return render(
        request,
        "downstream/home.html",
        {
            "customers": CustomerOrders.objects.all()[:50],
            "feed": OrderFeedEntry.objects.all()[:30],
            "inbox": {state: inbox.get(state, 0) for state in InboxMessage.State.values},
        },
    )
