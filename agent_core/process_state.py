"""What a process caches under its environment, and how to forget it.

The handlers cache per process what is costly to make (boto3 clients, the loaded runner, the
Encord client, secrets), as Lambda reuses an execution environment. A process that changes the
environment between invocations (the CLI applying its options, the local stack, tests) must drop
those caches, or it keeps talking to the old endpoint, project or key.
"""

from __future__ import annotations

import contextlib
import importlib
import sys


def reset_process_caches(agent_module: str | None = None, project_hash: str | None = None) -> None:
    """Forget what the handlers cached per process (clients, runner, Encord client, secrets).

    If ``agent_module`` names a module-level runner already imported for another project than
    ``project_hash``, the module is dropped so that the loader imports it afresh: a module-level
    ``QueueRunner(project_hash=os.environ["PROJECT_HASH"])`` must see the current project.
    Factories (``module:make_runner``) are called anew by the loader and need no reload.
    """
    from agent_core.pipeline.clients import clear_clients
    from agent_core.pipeline.loader import clear_runner_cache
    from agent_core.settings import cached_user_client

    clear_clients()
    clear_runner_cache()
    cached_user_client.cache_clear()
    with contextlib.suppress(ImportError):
        from aws_lambda_powertools.utilities import parameters
        from aws_lambda_powertools.utilities.parameters import base

        parameters.clear_caches()  # type: ignore[no-untyped-call]
        # Providers hold boto3 clients bound to the endpoint they were created under.
        base.DEFAULT_PROVIDERS.clear()  # type: ignore[attr-defined]
    if agent_module and project_hash:
        module_name, _, attribute = agent_module.partition(":")
        module = sys.modules.get(module_name)
        bound = getattr(getattr(module, attribute, None), "project_hash", None)
        if module is not None and bound is not None and str(bound) != project_hash:
            del sys.modules[module_name]
            importlib.invalidate_caches()
