"""``agentkit bench``: the kit's cost figures, measured side by side with the obvious alternatives.

One module per section of the table (``encord_requests``, ``producer``, ``throughput``,
``coldstart``, ``memory``, ``package``), the stage functions they run (``agents_plain``,
``agents_vision``), the alternatives they are compared with (``baselines``), a subprocess entry
point for what must be measured in a fresh interpreter (``worker``) and the runner that prints the
table and writes ``.bench/results.json`` (``runner``). Method and last results: BENCHMARKS.md.

Nothing is imported here: the cold-start section imports ``infra.bench.agents_*`` in fresh
interpreters and must measure the agent, not this package.
"""
