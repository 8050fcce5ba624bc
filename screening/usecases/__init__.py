"""What the product does, one use case per module (after Apache Superset's commands).

Each takes the Services of `bootstrap()` and plain arguments, does its work through queue, worker,
training, model and db, returns a typed record and raises from screening.errors. The click
commands (screening.cli) and the Celery tasks (screening.tasks) only parse, call one of these and
print or return the result.
"""
