"""Dagster definitions built from a fleet file: the scheduler is Dagster's, not ours.

Two views of the same unit of work (one company's stream group, ``runner.run_partition``):

* **Assets**, one per stream group (``intacct/<group>``), partitioned by company through the
  dynamic partitions ``intacct_company`` (kept equal to the fleet file by the sensor
  ``intacct_fleet_partitions``), with one schedule per company that has a ``schedule``. Each
  run carries the tag ``intacct/company``; with the QueuedRunCoordinator's
  ``tag_concurrency_limits`` on that tag (``fleet/dagster.yaml``) no two runs of a company
  overlap, whichever workers pick them up.
* **The fleet job** ``intacct_fleet``: every company x group as an op, run by the multiprocess
  executor (the k8s/celery/docker executors take the same ``tag_concurrency_limits``). Ops of
  one company share the op tag ``intacct/company``, limited per unique value to
  ``parallel_groups`` steps at once across all of the run's workers. (Dagster's instance-wide
  op pools would extend that across runs; with them, retried steps of our fleet test stalled
  after their worker started (1.13.29, not diagnosed further), so the fleet job does not use
  them.)

What holds across runs, workers and Dagster instances, daemon or not, are the PostgreSQL
advisory locks each partition takes (``FleetDB.partition_lock``): one run of a company x group
at a time, at most ``parallel_groups`` groups of a company; the tags above only keep workers
from waiting on them. Each running group's tap gets ``tier // parallel_groups`` requests in
flight, so a company's total stays within its Intacct tier. Failures: a crashed or failed step
is retried by ``RETRY_POLICY`` and Meltano resumes it from the state in its system database
(PostgreSQL); a configuration or credentials error fails at once
(``Failure(allow_retries=False)``) and only that company's steps fail.

``dagster dev -m intacct_dagster.definitions`` with ``INTACCT_FLEET_FILE`` set serves ``defs``.
"""

import os
from collections.abc import Iterator
from typing import Any

from dagster import (
    AddDynamicPartitionsRequest,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Definitions,
    DeleteDynamicPartitionsRequest,
    DynamicPartitionsDefinition,
    Failure,
    JobDefinition,
    MaterializeResult,
    OpDefinition,
    OpExecutionContext,
    Output,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    define_asset_job,
    job,
    multiprocess_executor,
    op,
    schedule,
    sensor,
)

from intacct_dagster.fleet import Company, Fleet, FleetError, load_fleet
from intacct_dagster.fleet_db import state_id
from intacct_dagster.load import run_load
from intacct_dagster.runner import PartitionFailedError, prepare, run_partition

FLEET_FILE_ENV = "INTACCT_FLEET_FILE"
COMPANY_TAG = "intacct/company"
PARTITIONS = DynamicPartitionsDefinition(name="intacct_company")
RETRY_POLICY = RetryPolicy(max_retries=2, delay=1.0)
FLEET_JOB = "intacct_fleet"
LOAD_JOB = "intacct_fleet_load"
ASSET_JOB = "intacct_company_sync"
FORKSERVER = {"forkserver": {"preload_modules": ["dagster", "intacct_dagster.definitions"]}}
"""Step processes fork from a server that imported Dagster once (spawn re-imports it per
step: ~2 CPU seconds each, as much as the partition's own tap and target on small data)."""


def sync(
    context: OpExecutionContext | AssetExecutionContext, fleet: Fleet, company: str, group: str
) -> dict[str, Any]:
    """Run one partition and return its metadata; failures become Dagster ``Failure``s."""
    try:
        found = fleet.company(company)
    except KeyError:
        raise Failure(
            f"company {company!r} is not in the fleet file", allow_retries=False
        ) from None
    if group not in found.groups:
        return {"skipped": f"{group} is not among {company}'s groups"}
    try:
        db = prepare(fleet)
        result = run_partition(
            fleet, found, group, db, run_id=context.run.run_id, attempt=context.retry_number + 1
        )
    except PartitionFailedError as failed:
        raise Failure(str(failed), allow_retries=failed.retryable) from None
    except FleetError as wrong:
        raise Failure(f"{company}/{group}: {wrong}", allow_retries=False) from None
    context.log.info(
        "%s/%s: %d records, %d API calls, %.1f s%s",
        company,
        group,
        result.total_records,
        result.api_calls,
        result.seconds,
        " (resumed from stored state)" if result.resumed else "",
    )
    return {
        "company": company,
        "stream_group": group,
        "records": result.total_records,
        "records_per_stream": result.records,
        "api_calls": result.api_calls,
        "seconds": round(result.seconds, 3),
        "state_checkpoints": result.checkpoints,
        "resumed_from_state": result.resumed,
        "meltano_state_id": state_id(company, group),
        "lock_wait_seconds": round(result.waited_seconds, 3),
        "attempt": context.retry_number + 1,
        "max_concurrency": found.per_group_concurrency,
    }


# ---------------------------------------------------------------------------- assets
def group_asset(fleet: Fleet, group: str) -> AssetsDefinition:
    """The asset of one stream group, one partition per company."""

    @asset(
        name=group,
        key_prefix=["intacct"],
        partitions_def=PARTITIONS,
        retry_policy=RETRY_POLICY,
        kinds={"intacct"},
        description=f"Intacct objects {', '.join(fleet.stream_groups[group])}, per company.",
    )
    def _group(context: AssetExecutionContext) -> MaterializeResult:
        return MaterializeResult(metadata=sync(context, fleet, context.partition_key, group))

    return _group


def company_schedule(company: Company, groups: list[str]) -> ScheduleDefinition:
    """A cron schedule that materializes one company's groups as one run."""

    @schedule(
        name=f"intacct_{company.name}_schedule",
        cron_schedule=str(company.schedule),
        job_name=ASSET_JOB,
    )
    def _company_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        return RunRequest(
            run_key=None,
            partition_key=company.name,
            asset_selection=[AssetKey(["intacct", g]) for g in groups],
            tags={COMPANY_TAG: company.name},
            run_config={
                "execution": {
                    "config": {"multiprocess": {"max_concurrent": company.parallel_groups}}
                }
            },
        )

    return _company_schedule


def partitions_sensor(fleet: Fleet) -> SensorDefinition:
    """Keeps the ``intacct_company`` partitions equal to the companies of the fleet file."""

    @sensor(name="intacct_fleet_partitions", minimum_interval_seconds=60)
    def _partitions(context: SensorEvaluationContext) -> SensorResult:
        wanted = {c.name for c in fleet.companies}
        have = set(context.instance.get_dynamic_partitions(PARTITIONS.name or ""))
        requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
        if wanted - have:
            requests.append(PARTITIONS.build_add_request(sorted(wanted - have)))
        if have - wanted:
            requests.append(PARTITIONS.build_delete_request(sorted(have - wanted)))
        return SensorResult(dynamic_partitions_requests=requests)

    return _partitions


# ---------------------------------------------------------------------------- fleet job
def sync_op(fleet: Fleet, company: Company, group: str) -> OpDefinition:
    """One company's stream group as an op of the fleet job."""

    @op(
        name=f"sync__{company.name}__{group}",
        tags={COMPANY_TAG: company.name},
        retry_policy=RETRY_POLICY,
    )
    def _sync(context: OpExecutionContext) -> Iterator[Output[None]]:
        yield Output(None, metadata=sync(context, fleet, company.name, group))

    return _sync


def build_fleet_job(fleet: Fleet, max_workers: int = 4) -> JobDefinition:
    """Every company x group of the fleet as independent ops under the multiprocess executor."""
    ops = [
        sync_op(fleet, company, group) for company in fleet.companies for group in company.groups
    ]
    per_company = max(c.parallel_groups for c in fleet.companies)
    executor = multiprocess_executor.configured(
        {
            "max_concurrent": max_workers,
            "start_method": FORKSERVER,
            "tag_concurrency_limits": [
                {
                    "key": COMPANY_TAG,
                    "value": {"applyLimitPerUniqueValue": True},
                    "limit": per_company,
                }
            ],
        }
    )

    @job(name=FLEET_JOB, executor_def=executor, tags={"intacct/fleet": "true"})
    def _fleet() -> None:
        for sync_definition in ops:
            sync_definition()

    return _fleet


def load_op(fleet: Fleet, company: Company) -> OpDefinition:
    """One company's warehouse -> Intacct load as an op of the fleet load job."""

    @op(
        name=f"load__{company.name}",
        tags={COMPANY_TAG: company.name},
        retry_policy=RETRY_POLICY,
    )
    def _load(context: OpExecutionContext) -> Iterator[Output[None]]:
        try:
            store = prepare(fleet)
            result = run_load(
                fleet, company, store, run_id=context.run.run_id, attempt=context.retry_number + 1
            )
        except PartitionFailedError as failed:
            raise Failure(str(failed), allow_retries=failed.retryable) from None
        except FleetError as wrong:
            raise Failure(f"{company.name}/load: {wrong}", allow_retries=False) from None
        yield Output(
            None,
            metadata={
                "company": company.name,
                "records": result.records,
                "statuses": result.statuses,
                "results_path": result.results_path,
                "seconds": round(result.seconds, 3),
            },
        )

    return _load


def build_load_job(fleet: Fleet, max_workers: int = 4) -> JobDefinition:
    """One load op per company under the multiprocess executor (companies in parallel)."""
    ops = [load_op(fleet, company) for company in fleet.companies]
    executor = multiprocess_executor.configured(
        {"max_concurrent": max_workers, "start_method": FORKSERVER}
    )

    @job(name=LOAD_JOB, executor_def=executor, tags={"intacct/fleet": "load"})
    def _fleet_load() -> None:
        for load_definition in ops:
            load_definition()

    return _fleet_load


def build_definitions(fleet: Fleet, max_workers: int = 4) -> Definitions:
    """Assets, asset job, schedules, the partitions sensor and the fleet job of one fleet."""
    groups = sorted({g for c in fleet.companies for g in c.groups})
    assets = [group_asset(fleet, group) for group in groups]
    asset_job = define_asset_job(ASSET_JOB, selection=[AssetKey(["intacct", g]) for g in groups])
    jobs: list[Any] = [  # JobDefinition and the asset job (an unresolved job definition)
        asset_job,
        build_fleet_job(fleet, max_workers),
    ]
    if fleet.load:
        jobs.append(build_load_job(fleet, max_workers))
    schedules = [company_schedule(c, list(c.groups)) for c in fleet.companies if c.schedule]
    return Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=[partitions_sensor(fleet)],
    )


def fleet_from_env() -> Fleet:
    path = os.environ.get(FLEET_FILE_ENV)
    if not path:
        raise FleetError(f"set {FLEET_FILE_ENV} to the fleet file")
    return load_fleet(path)


def fleet_job_from_env() -> JobDefinition:
    """Module-level builder so ``reconstructable`` can rebuild the job in each step process."""
    workers = int(os.environ.get("INTACCT_FLEET_WORKERS", "4"))
    return build_fleet_job(fleet_from_env(), workers)


def load_job_from_env() -> JobDefinition:
    """Like ``fleet_job_from_env`` for the fleet load job."""
    workers = int(os.environ.get("INTACCT_FLEET_WORKERS", "4"))
    return build_load_job(fleet_from_env(), workers)


if os.environ.get(FLEET_FILE_ENV):  # `dagster dev -m intacct_dagster.definitions`
    defs = build_definitions(fleet_from_env())
