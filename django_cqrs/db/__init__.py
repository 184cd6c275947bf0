"""Database-vendor code of django_cqrs, one module per concern; nothing else writes SQL.

    from django_cqrs.db import appendonly, errors, estimates, jsontext, log, readonly, redirect
    from django_cqrs.db import shadow, transactions, upserts

- ``statements``: what kind of statement a SQL string is: its commands, read in the
  database's lexical rules, each one's first keyword, write or read.
- ``transactions``: the command's transaction (SQLite takes its write lock at the first
  write), row locks where the database has them, PostgreSQL's ``lock_timeout``.
- ``errors``: what a database error means: a deadlock or serialization failure (run the
  transaction again) or a lock not granted in time (SQLSTATE, SQLite result codes).
- ``readonly``: the query write guard on every alias: statements checked before they are
  sent, and the database's own refusal (PostgreSQL ``READ ONLY``, a SQLite authorizer).
- ``upserts``: insert-or-replace of whole read-model rows, counters added in the
  database, and the conditional upsert behind the async trigger flag.
- ``log``: the log's order (transaction ids, the horizon of open transactions) and
  the locks on its table.
- ``shadow``: the shadow tables a rebuild fills (the live tables' definitions, copied
  from the database), and the swap that renames them into place.
- ``redirect``: a rebuild's statements rewritten to its shadow tables (so plain ORM
  calls land there too), and every other write refused before it is sent.
- ``estimates``: a table's row count from PostgreSQL's statistics, for pages that must
  not run ``COUNT(*)`` over the event log.
- ``jsontext``: ``KeyText``, a JSON key as text in SQL an expression index matches.
- ``appendonly``: the triggers that make the database refuse UPDATE and DELETE of stored
  events, and the SQLite function that lets Django's flush through.

None reads django_cqrs settings: each function takes the database alias it works on, or
the model or queryset whose database it uses.
Backends other than SQLite and PostgreSQL get the portable ORM path.
"""
