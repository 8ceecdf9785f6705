"""The obvious alternatives the kit is measured against.

* ``per_task_consume``: one message at a time, with the SDK calls a stage function needs done for
  that task alone (as a per-message queue worker does): list its label row, initialise it, fetch
  its storage item, save, set the priority, proceed. The project is fetched once and reused (a
  warm worker), and binding the task spec costs no request: the baseline gets every benefit the
  kit gets except bundling.
* ``per_message_produce``: list the stage's tasks and ``SendMessage`` each spec on its own.

The sequential-runner baseline of the throughput section is agent_core's own ``Runner``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.bench.agents_plain import PATHWAY, PRIORITY, STAGE, set_quality

if TYPE_CHECKING:
    from encord.project import Project
    from encord.workflow.stages.agent import AgentStage


def per_task_consume(project: Project, stage: AgentStage, spec: str, kind: str) -> None:
    """Process one task spec the per-message way for stage-function kind ``kind``."""
    from agent_core.encord_io import bind_task

    task = bind_task(spec, stage)
    if kind != "task_only":
        rows = project.list_label_rows_v2(data_hashes=[task.data_hash])
        if not rows:
            raise RuntimeError(f"no label row for data hash {task.data_hash}")
        lr = rows[0]
        lr.initialise_labels()
        if kind == "label_row_storage":
            item = lr.get_storage_item(get_signed_urls=True)
            if not item.uuid:
                raise RuntimeError("storage item without a uuid")
        if kind == "save_priority":
            set_quality(lr)
            lr.save()
            lr.set_priority(PRIORITY)
    task.proceed(pathway_name=PATHWAY)


def per_message_produce(
    project: Project, send_message: Callable[..., Any], queue_url: str, stage_title: str = STAGE
) -> int:
    """Enqueue every task of the stage with one SendMessage each; returns how many."""
    from encord.workflow.stages.agent import AgentStage

    stage = project.workflow.get_stage(name=stage_title, type_=AgentStage)
    sent = 0
    for task in stage.get_tasks():
        send_message(QueueUrl=queue_url, MessageBody=task.model_dump_json())
        sent += 1
    return sent
