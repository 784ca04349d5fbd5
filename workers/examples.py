"""The example workflows: each shows one durable pattern.

Run them with ``zart-es worker --app workers.examples`` and start one with the Client
(``await client.start("batch-processor", BatchData(count=30))``), or watch them all in
``zart-es demo``.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from zart_es import Context, TaskError, durable, queue

from . import services
from .services import Item, Record


class BatchData(msgspec.Struct, frozen=True):
    """Input of the batch examples: how many items to fetch."""

    count: int = 20


class BatchResult(msgspec.Struct, frozen=True):
    """Output of the batch examples."""

    processed: int
    results: list[str] = []


@durable("batch-processor", timeout="6h")
async def batch_processor(ctx: Context, data: BatchData) -> BatchResult:
    """Fetch items, then one step per item: a crash resumes at the first unprocessed item."""
    items = await ctx.step("fetch-items", lambda: services.fetch_pending_items(data.count),
                           type=list[Item])
    results = []
    for i, item in enumerate(items):
        results.append(
            await ctx.step(f"process-item-{i}", services.process_item, item)
        )
    return BatchResult(processed=len(items), results=results)


@durable("durable-loop")
async def durable_loop(ctx: Context, data: BatchData) -> int:
    """The same with ``ctx.durable_loop``: steps ``notify-0``, ``notify-1``, ..."""
    items = await ctx.step("fetch-items", lambda: services.fetch_pending_items(data.count),
                           type=list[Item])
    sent = await ctx.durable_loop("notify", items, services.send_mail)
    return sum(1 for ok in sent if ok)


class PollData(msgspec.Struct, frozen=True):
    """Input of the job poller: how long the job runs and how often to look."""

    name: str = "nightly"
    runs_for: float = 1.0
    every: float = 0.3
    fails: bool = False
    max_checks: int = 100


@durable("job-poller")
async def job_poller(ctx: Context, data: PollData) -> str:
    """Submit a job, then check-status-{n} and a durable sleep until it is done or failed.
    Query ``progress`` (``zart-es query ID progress``) tells how far it got."""
    progress: dict[str, object] = {"checks": 0, "last": "submitting"}
    ctx.on_query("progress", lambda: progress)
    job = await ctx.step("submit",
                         lambda: services.submit_job(data.name, data.runs_for, data.fails),
                         type=services.Job)
    for attempt in range(data.max_checks):
        status = await ctx.step(f"check-status-{attempt}", lambda: services.job_status(job),
                                type=str)
        progress = {"job": job.job_id, "checks": attempt + 1, "last": status}
        if status == "done":
            return f"{job.job_id} done after {attempt + 1} checks"
        if status == "failed":
            raise TaskError.custom(f"{job.job_id} failed externally")
        await ctx.sleep(timedelta(seconds=data.every))
    raise TaskError.custom(f"{job.job_id} still running after {data.max_checks} checks")


@durable("transform-records")
async def transform_records(ctx: Context, count: int) -> int:
    """Collect transformed rows step by step, then write them all in one step."""
    source = await ctx.step("load", lambda: services.load_records(count), type=list[Record])
    out: list[Record] = []
    for row in source:
        out.append(await ctx.step(f"transform-{row.key}", _transform, row))
    return await ctx.step("write", lambda: services.write_records(out), type=int)


def _transform(row: Record) -> Record:
    return Record(row.key, row.value * 10)


class ChunkData(msgspec.Struct, frozen=True):
    """Input of the chunked example: a large data set cut into chunks."""

    total: int = 10_000
    chunk_size: int = 1_000


@durable("chunked-processing")
async def chunked_processing(ctx: Context, data: ChunkData) -> int:
    """One step per chunk (not per row) keeps a large data set's log short."""
    chunks = range(0, data.total, data.chunk_size)

    def sum_chunk(index: int, start: int) -> int:
        services.record_effect("chunk", index)
        return sum(range(start, min(start + data.chunk_size, data.total)))

    sums = await ctx.durable_loop("chunk", chunks, sum_chunk, type=int)
    return sum(sums)


class ProvisionData(msgspec.Struct, frozen=True):
    """Input of the provisioning example."""

    config: str = "small"
    fail_times: int = 2
    delay: str = "200ms"


@durable("provision")
async def provision(ctx: Context, data: ProvisionData) -> dict[str, str]:
    """A flaky cloud call with durable retries and exponential backoff."""
    return await ctx.step_with_retry(
        "provision", lambda: services.provision(data.config, data.fail_times),
        retries=5, backoff="exponential", delay=data.delay, max_delay="5s",
    )


queue("emails", concurrency=2)
"""At most two emails in flight per tenant (``Client.start(..., queue_key=tenant)``)."""


class EmailData(msgspec.Struct, frozen=True):
    """Input of the email example."""

    tenant: str
    to: str


@durable("send-email", queue="emails")
async def send_email(ctx: Context, data: EmailData) -> str:
    """Throttled per tenant by the ``emails`` queue, across every worker."""
    return await ctx.step("send", lambda: services.send_email(data.tenant, data.to))


@durable("checkout")
async def checkout(ctx: Context, order: str) -> str:
    """A payment step without retries: during an outage the execution fails, and an
    operator's ``retry_step`` resumes it at the charge once the provider is back."""
    reserved = await ctx.step("reserve", lambda: f"reserved:{order}")
    charged = await ctx.step("charge", lambda: services.charge_card(order))
    return f"{reserved} {charged}"


@durable("render-thumbnails", task_queue="gpu")
async def render_thumbnails(ctx: Context, data: BatchData) -> BatchResult:
    """Runs only on workers serving task queue ``gpu`` (``zart-es worker --task-queue
    gpu``, the GPU pool of ``deploy/overlays/task-queue-gpu``); started from anywhere, it
    waits for one if none runs. One recorded step per image: a pod lost mid-batch resumes
    at the next image on another GPU worker."""
    rendered = [await ctx.step(f"render-{i}", services.render_thumbnail, i)
                for i in range(data.count)]
    return BatchResult(processed=len(rendered), results=rendered)


class Expense(msgspec.Struct, frozen=True):
    """Input of the approval example."""

    amount: int
    approvers: int = 1


@durable("expense-approval", updates=["approve"])
async def expense_approval(ctx: Context, expense: Expense) -> str:
    """Waits for ``approve`` updates (``zart-es update ID approve --payload '"ann"'``):
    each is answered with how many approvals are still missing, so the approver learns
    the outcome of their own request. Query ``approvals`` lists who approved so far."""
    approved: list[str] = []
    ctx.on_query("approvals", lambda: approved)
    while len(approved) < expense.approvers:
        update = await ctx.wait_for_update("approve", type=str)
        if update.payload in approved:
            await update.fail(f"{update.payload} approved already")
            continue
        approved.append(update.payload)
        await update.reply({"missing": expense.approvers - len(approved)})
    return await ctx.step("pay", lambda: f"paid {expense.amount} ({', '.join(approved)})")
