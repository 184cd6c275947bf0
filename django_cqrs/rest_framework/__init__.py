"""Django REST framework integration: commands and queries over HTTP.

A Django app of its own (label ``django_cqrs_rest``), for its idempotency table and the
``cqrs_purge_idempotency`` command:

    # settings.py
    INSTALLED_APPS = [..., "rest_framework", "django_cqrs", "django_cqrs.rest_framework"]

    # myapp/api.py
    from django_cqrs.rest_framework.routers import CQRSRouter
    from django_cqrs.rest_framework.viewsets import (
        CQRSViewSet, command_action, command_route, query_action, query_route,
    )

    class OrderViewSet(CQRSViewSet):
        aggregate = Order
        id_field = "order_id"
        read_models = [OrderView]

        create = command_route(PlaceOrder, result_field="order_id",
                               fields={"items.quantity": {"min_value": 1}})
        list = query_route(ListOrders, serializer_class=OrderViewSerializer)
        retrieve = query_route(GetOrder, serializer_class=OrderViewSerializer)
        cancel = command_action(CancelOrder)

    router = CQRSRouter()
    router.register("orders", OrderViewSet, basename="order")
    router.expose_command(ShipOrder)        # opt-in: POST commands/ship-order/

    # urls.py
    urlpatterns = [path("api/", include(router.urls))]

Modules: ``serializers`` (derived from the dataclasses), ``routes`` (the route
declarations, re-exported by ``viewsets``), ``viewsets`` (views that dispatch the
routes' messages), ``routers``, ``exceptions`` (problem details), ``preconditions``
(ETag / If-Match), ``idempotency`` (Idempotency-Key, stored in ``models``),
``consistency`` (CQRS-Position / CQRS-Min-Position) and ``schema`` (drf-spectacular).
"""
