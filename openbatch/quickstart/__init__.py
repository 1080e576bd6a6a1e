"""``openbatch quickstart``: the seed tutorial's workflow, its task program and its input texts."""
