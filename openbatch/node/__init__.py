"""Code that runs where a node is: its directories (layout), a task's environment (env), resource
files (fetch), the process itself (run), output files (upload) and the account it runs as (identity).

Nothing here knows the Batch store or HTTP routes: the compute provider calls these with plain
values and Batch-wire dicts (camelCase, as api-version 2024-07-01.20.0) and turns what they raise
into task state.
"""
