"""`screen serve`: the review app (FastAPI, server-side Jinja2 templates, no front-end build). Routes only parse,
call a use case and render; nothing is served to a client that has not signed in."""
