"""The public surface: ``zart_es.__all__`` is a deliberate list, and the error tree is one
tree rooted at ``ZartError`` (engine control flow aside), drawn in ``errors.py``."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

import zart_es
from zart_es.core import _errors as errors

pytestmark = pytest.mark.pure

PUBLIC = [
    "ArchiveError",
    "BulkFilter",
    "BulkOutcome",
    "Cancelled",
    "ChildFailedError",
    "Client",
    "ConfigError",
    "Context",
    "CorruptLog",
    "Deployment",
    "DuplicateStepName",
    "DuplicateWorkflow",
    "EventTimeout",
    "ExecutionArchived",
    "ExecutionEnded",
    "ExecutionExists",
    "ExecutionFailedError",
    "ExecutionHandle",
    "ExecutionNotFound",
    "ExecutionStatus",
    "ExecutionSummary",
    "FailureInfo",
    "InvalidDuration",
    "InvalidExecutionId",
    "InvalidStepName",
    "NonRetryableError",
    "NondeterminismError",
    "ParentEnded",
    "PartitionMismatch",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadNotEncodable",
    "PayloadTooLarge",
    "QueryFailed",
    "QueryTimeout",
    "Queue",
    "RedisUnavailable",
    "Registry",
    "RepairRefused",
    "ResultTimeout",
    "ScheduleExists",
    "ScheduleNotFound",
    "Scheduler",
    "Schedules",
    "SignalTimeout",
    "Status",
    "StepFailedError",
    "StepTimedOut",
    "StoreError",
    "TaskError",
    "UnknownQuery",
    "UnknownStep",
    "UnknownUpdate",
    "UnknownWorkflow",
    "Update",
    "UpdateFailed",
    "UpdateTimeout",
    "VersionConflict",
    "Worker",
    "ZartError",
    "__version__",
    "default_registry",
    "durable",
    "queue",
    "schedule",
]

CONTROL_FLOW = {"Suspend", "Cancelled", "LeaseLost", "Interrupted", "Paused", "StoreRefused"}
"""Engine control flow: BaseException, so a user's ``except Exception:`` cannot swallow it."""

ERROR_CLASSES: dict[str, type[BaseException]] = {
    name: cls
    for name, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    and cls.__name__ == name  # not a first name kept as an alias (EventTimeout)
}


def test_all_is_the_agreed_list() -> None:
    assert zart_es.__all__ == PUBLIC


def test_all_is_sorted_and_unique() -> None:
    assert zart_es.__all__ == sorted(set(zart_es.__all__))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("zart_es")
    assert hasattr(module, name)
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from zart_es import {name}", namespace)
    assert namespace[name] is getattr(zart_es, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from zart_es import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_version_is_a_string() -> None:
    assert isinstance(zart_es.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", zart_es.__version__)


def test_public_errors_are_the_errors_module_classes() -> None:
    for name in PUBLIC:
        value = getattr(zart_es, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert value is ERROR_CLASSES[value.__name__]


def test_error_classes_are_found() -> None:
    assert {"ZartError", "ConfigError", "PayloadError", "StoreError"} <= set(ERROR_CLASSES)
    assert set(ERROR_CLASSES) >= CONTROL_FLOW


@pytest.mark.parametrize("name", sorted(set(ERROR_CLASSES) - CONTROL_FLOW))
def test_errors_derive_from_zart_error(name: str) -> None:
    assert issubclass(ERROR_CLASSES[name], errors.ZartError)
    assert issubclass(ERROR_CLASSES[name], Exception)


@pytest.mark.parametrize("name", sorted(CONTROL_FLOW))
def test_control_flow_is_not_an_exception(name: str) -> None:
    cls = ERROR_CLASSES[name]
    assert issubclass(cls, BaseException)
    assert not issubclass(cls, Exception)
    assert not issubclass(cls, errors.ZartError)


@pytest.mark.parametrize("cls", [errors.Suspend, errors.LeaseLost])
def test_except_exception_does_not_swallow_control_flow(cls: type[BaseException]) -> None:
    def engine_call() -> None:
        raise cls()

    def user_code() -> None:
        try:
            engine_call()
        except Exception:  # what a careless workflow writes
            pytest.fail(f"{cls.__name__} was swallowed by 'except Exception'")

    with pytest.raises(cls):
        user_code()


def _docstring_tree() -> dict[str, str | None]:
    """Class -> parent as drawn in errors.py's docstring (None for the root)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│ ]\s*)*(?:[├└]── )?)([A-Z]\w+)\s{2,}\S", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_docstring_draws_every_error_with_its_real_parent() -> None:
    tree = _docstring_tree()
    assert tree["ZartError"] is None
    assert set(tree) == set(ERROR_CLASSES) - CONTROL_FLOW
    for name, parent in tree.items():
        if parent is not None:
            assert issubclass(ERROR_CLASSES[name], ERROR_CLASSES[parent]), (name, parent)
            assert ERROR_CLASSES[parent] in ERROR_CLASSES[name].__bases__, (name, parent)


def test_docstring_names_the_control_flow_classes() -> None:
    for name in CONTROL_FLOW:
        assert f":class:`{name}`" in (errors.__doc__ or "")


def test_status_is_a_str_enum_and_the_old_field_name_still_reads() -> None:
    status = zart_es.ExecutionStatus(execution_id="e", workflow="w",
                                      status=zart_es.Status.SLEEPING, version=3,
                                      created_ms=1, updated_ms=2)
    assert status.status == "sleeping"
    assert status.state is zart_es.Status.SLEEPING
    assert not status.done
    assert not zart_es.Status.SLEEPING.terminal
    assert zart_es.Status("timed_out").terminal
    assert [str(s) for s in zart_es.Status] == [
        "pending", "running", "sleeping", "waiting", "paused", "quarantined", "completed",
        "failed", "cancelled", "timed_out"]


def test_first_names_of_renamed_public_names_still_work() -> None:
    """Signals were called events: code written against 0.3 keeps running."""
    assert zart_es.EventTimeout is zart_es.SignalTimeout
    assert zart_es.Context.wait_for_event is zart_es.Context.wait_for_signal
    assert errors.EventTimeout is errors.SignalTimeout


async def test_client_and_worker_take_a_deployment_or_build_one() -> None:
    """The handle is the main form; a URL and settings build one; settings beside a
    handle would be ignored, so they are refused, naming them."""
    deployment = zart_es.Deployment("redis://127.0.0.1:1/0", partitions=4, prefix="t")
    client = zart_es.Client(deployment)
    worker = zart_es.Worker(deployment, registry=zart_es.Registry())
    assert client.deployment is deployment
    assert worker.deployment is deployment
    built = zart_es.Client("redis://127.0.0.1:1/0", partitions=8, prefix="other")
    assert (built.keys.partitions, built.keys.prefix) == (8, "other")
    with pytest.raises(TypeError, match="partitions, prefix given beside a Deployment"):
        zart_es.Worker(deployment, partitions=4, prefix="t")
    with pytest.raises(TypeError, match="payload_keys given beside a Deployment"):
        zart_es.Client(deployment, payload_keys="k")
    await built.close()
    await deployment.close()
