"""``@durable`` and :class:`Registry` (zart_es.workflow) and :class:`Keys` (zart_es.store:
every Redis key, one hash slot per partition), without Redis."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zart_es import default_registry
from zart_es.core import (
    ConfigError,
    DuplicateWorkflow,
    InvalidDuration,
    InvalidExecutionId,
    UnknownWorkflow,
    ZartError,
    check_execution_id,
)
from zart_es.store import Keys
from zart_es.workflow import Context, Registry, durable

pytestmark = pytest.mark.pure

if TYPE_CHECKING:  # the idiom ruff's flake8-type-checking rules push users towards
    from zart_es.workflow import Context as TypingOnlyContext


class Order(msgspec.Struct):
    id: str
    amount: int


class Receipt(msgspec.Struct):
    order_id: str


# -- @durable and Registry -----------------------------------------------------------------


def test_durable_registers_into_the_given_registry() -> None:
    registry = Registry()

    async def checkout(ctx: Context, data: Order) -> Receipt:
        return Receipt(order_id=data.id)

    decorated = durable("test-registry-checkout", registry=registry)(checkout)
    assert decorated is checkout  # returned unchanged: still callable in unit tests
    assert "test-registry-checkout" in registry
    assert "test-registry-checkout" not in default_registry
    workflow = registry.get("test-registry-checkout")
    assert workflow.name == "test-registry-checkout"
    assert workflow.fn is checkout
    assert workflow.input_type is Order
    assert workflow.result_type is Receipt
    assert workflow.timeout_ms is None


def test_decorator_syntax() -> None:
    registry = Registry()

    @durable("deco", timeout="6h", registry=registry)
    async def deco(ctx: Context, data: list[int]) -> int:
        return sum(data)

    workflow = registry.get("deco")
    assert workflow.fn is deco
    assert workflow.input_type == list[int]
    assert workflow.result_type is int
    assert workflow.timeout_ms == 21_600_000


def test_unannotated_input_is_any() -> None:
    registry = Registry()

    async def loose(ctx, data):  # type: ignore[no-untyped-def]
        return data

    workflow = registry.register("loose", loose)
    assert workflow.input_type is Any
    assert workflow.result_type is Any


def test_input_type_survives_a_type_checking_only_context_import() -> None:
    # `if TYPE_CHECKING: from zart_es import Context` is a common idiom; the annotation of
    # ctx then cannot be resolved at runtime, but the input's type can and must be used:
    # otherwise the input silently decodes to a dict and `data.id` fails inside the workflow
    registry = Registry()

    async def typed(ctx: TypingOnlyContext, data: Order) -> Receipt:
        return Receipt(order_id=data.id)

    workflow = registry.register("typed", typed)
    assert workflow.input_type is Order
    assert workflow.result_type is Receipt


async def test_one_parameter_workflow() -> None:
    registry = Registry()
    calls: list[Context] = []

    async def nightly(ctx: Context) -> str:
        calls.append(ctx)
        return "done"

    durable("nightly", registry=registry)(nightly)
    workflow = registry.get("nightly")
    assert workflow.input_type is None
    assert workflow.result_type is str
    ctx = cast(Context, object())
    assert await workflow.fn(ctx, {"ignored": True}) == "done"
    assert calls == [ctx]
    # registering the same function again is a no-op, not a duplicate
    durable("nightly", registry=registry)(nightly)
    assert registry.get("nightly").input_type is None


def test_sync_function_is_rejected() -> None:
    registry = Registry()

    def sync(ctx: Context, data: int) -> int:
        return data

    with pytest.raises(ConfigError, match="async def"):
        registry.register("sync", sync)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="async def"):
        durable("sync", registry=registry)(sync)  # type: ignore[type-var]
    assert "sync" not in registry


def test_async_generator_is_rejected() -> None:
    registry = Registry()

    async def gen(ctx: Context, data: int) -> AsyncIterator[int]:
        yield data

    with pytest.raises(ConfigError):
        registry.register("gen", gen)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 3])
def test_wrong_parameter_count_is_rejected(count: int) -> None:
    registry = Registry()

    async def none() -> None:
        return None

    async def three(ctx: Context, data: int, extra: int) -> None:
        return None

    fn = none if count == 0 else three
    with pytest.raises(ConfigError, match=f"not {count} parameters"):
        registry.register("bad", fn)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "tab\there", "new\nline", 5, None])
def test_bad_workflow_name_is_rejected(name: Any) -> None:
    registry = Registry()

    async def wf(ctx: Context) -> None:
        return None

    with pytest.raises(ConfigError):
        durable(name, registry=registry)(wf)
    assert registry.names() == []


def test_bad_timeout_is_rejected() -> None:
    registry = Registry()

    async def wf(ctx: Context) -> None:
        return None

    with pytest.raises(InvalidDuration):
        durable("wf", timeout="6 fortnights", registry=registry)(wf)


def test_duplicate_workflow_name() -> None:
    registry = Registry()

    async def first(ctx: Context, data: int) -> int:
        return 1

    async def second(ctx: Context, data: int) -> int:
        return 2

    registry.register("same", first)
    registry.register("same", first)  # the same function again: fine
    with pytest.raises(DuplicateWorkflow) as info:
        registry.register("same", second)
    assert info.value.name == "same"
    assert "'same'" in str(info.value)
    assert isinstance(info.value, ZartError)
    assert registry.get("same").fn is first  # the first registration stands


def test_unknown_workflow_lists_the_known_names() -> None:
    registry = Registry()

    async def wf(ctx: Context) -> None:
        return None

    for name in ("zeta", "alpha", "mid"):
        durable(name, registry=registry)(wf)
    with pytest.raises(UnknownWorkflow) as info:
        registry.get("nope")
    assert info.value.name == "nope"
    assert "'nope'" in str(info.value)
    assert "alpha, mid, zeta" in str(info.value)
    assert isinstance(info.value, LookupError)
    assert registry.names() == ["alpha", "mid", "zeta"]


def test_unknown_workflow_in_an_empty_registry() -> None:
    with pytest.raises(UnknownWorkflow, match="'nope'") as info:
        Registry().get("nope")
    assert "registered" not in str(info.value)


def test_registries_are_independent() -> None:
    one, two = Registry(), Registry()

    async def wf(ctx: Context) -> None:
        return None

    durable("only-in-one", registry=one)(wf)
    assert "only-in-one" in one
    assert "only-in-one" not in two
    with pytest.raises(UnknownWorkflow):
        two.get("only-in-one")


# -- keys ----------------------------------------------------------------------------------

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@=+\-]{0,199}"
execution_ids = st.from_regex(ID_PATTERN, fullmatch=True)
prefixes = st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True)
partition_counts = st.integers(min_value=1, max_value=4096)


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (its rule for ``{...}`` hash tags)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def test_key_formats() -> None:
    # key names are persistent state (and deploy/ names the work streams): pin them
    keys = Keys()
    assert keys.partition_of("order-1") == 15
    assert keys.work(15) == "{zart:15}:work"
    assert keys.timers(15) == "{zart:15}:timers"
    assert keys.log("order-1") == "{zart:15}:x:order-1"
    assert keys.meta("order-1") == "{zart:15}:m:order-1"
    assert keys.index(15, None) == "{zart:15}:ix:all"
    assert keys.index(15, "running") == "{zart:15}:ix:running"
    assert keys.config() == "zart:config"
    assert Keys(prefix="staging", partitions=4).work(0) == "{staging:0}:work"


def test_partition_of_is_crc32_mod_partitions() -> None:
    # stable across processes and Python versions (no hash randomization)
    assert Keys(partitions=16).partition_of("a") == 3
    assert Keys(partitions=4096).partition_of("a") == 3651
    assert Keys(partitions=4096).partition_of("order-1") == 4079
    assert Keys(partitions=1).partition_of("order-1") == 0


@settings(max_examples=200, deadline=None)
@given(execution_ids, partition_counts)
def test_partition_of_is_stable_and_in_range(execution_id: str, partitions: int) -> None:
    keys = Keys(partitions=partitions)
    p = keys.partition_of(execution_id)
    assert 0 <= p < partitions
    assert Keys(partitions=partitions).partition_of(execution_id) == p
    assert p == zlib.crc32(execution_id.encode()) % partitions


@settings(max_examples=200, deadline=None)
@given(execution_ids, prefixes, partition_counts)
def test_one_execution_lives_in_one_slot(execution_id: str, prefix: str, partitions: int) -> None:
    keys = Keys(prefix=prefix, partitions=partitions)
    p = keys.partition_of(execution_id)
    tag = hash_tag(keys.work(p))
    assert tag == f"{prefix}:{p}"
    for key in (
        keys.log(execution_id),
        keys.meta(execution_id),
        keys.timers(p),
        keys.index(p, None),
        keys.index(p, "completed"),
        keys.index_prefix(p) + "failed",
    ):
        assert hash_tag(key) == tag, key
    assert keys.log(execution_id) != keys.meta(execution_id)


@settings(max_examples=100, deadline=None)
@given(prefixes, st.integers(min_value=2, max_value=64), st.data())
def test_partitions_have_distinct_tags(prefix: str, partitions: int, data: st.DataObject) -> None:
    keys = Keys(prefix=prefix, partitions=partitions)
    a, b = data.draw(st.lists(st.integers(0, partitions - 1), min_size=2, max_size=2,
                              unique=True))
    assert hash_tag(keys.work(a)) != hash_tag(keys.work(b))


@pytest.mark.parametrize("partitions", [0, -1, 4097])
def test_bad_partition_count(partitions: int) -> None:
    with pytest.raises(ValueError, match="partitions"):
        Keys(partitions=partitions)


@pytest.mark.parametrize("prefix", ["", "a b", "a{b", "a}b", "a:b", "x" * 41])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix=prefix)


@pytest.mark.parametrize(
    "execution_id",
    ["a", "0", "order-123", "A.b_c:d@e=f+g-h", "x" * 200, "2024-01-01T00:00:00Z",
     "user@example.com", "9f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8"],
)
def test_valid_execution_ids(execution_id: str) -> None:
    assert check_execution_id(execution_id) == execution_id


@pytest.mark.parametrize(
    "execution_id",
    ["", "-a", ".a", ":a", "_a", "a b", "a\n", "a\x00", "x" * 201, "é", "a{b}", "a/b", "a*",
     " a", 123, None, b"abc"],
)
def test_invalid_execution_ids(execution_id: Any) -> None:
    with pytest.raises(InvalidExecutionId) as info:
        check_execution_id(execution_id)
    assert info.value.execution_id == execution_id
    assert repr(execution_id) in str(info.value)
    assert isinstance(info.value, ValueError)


@settings(max_examples=200, deadline=None)
@given(execution_ids)
def test_generated_ids_are_accepted(execution_id: str) -> None:
    assert check_execution_id(execution_id) == execution_id


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_ids_with_a_space_or_brace_are_rejected(text: str) -> None:
    for bad in (f"a {text}", f"a{{{text}", f"a}}{text}"):
        with pytest.raises(InvalidExecutionId):
            check_execution_id(bad)


@settings(max_examples=200, deadline=None)
@given(execution_ids, st.text(min_size=1, max_size=40))  # timer names are never empty
def test_timer_member_round_trip(execution_id: str, timer: str) -> None:
    member = Keys.timer_member(execution_id, timer)
    assert Keys.parse_timer_member(member) == (execution_id, timer)
    assert Keys().timer_member(execution_id, timer) == member


@settings(max_examples=200, deadline=None)
@given(execution_ids, st.text(max_size=10), execution_ids, st.text(max_size=10))
def test_timer_members_are_distinct(id_a: str, timer_a: str, id_b: str, timer_b: str) -> None:
    same = Keys.timer_member(id_a, timer_a) == Keys.timer_member(id_b, timer_b)
    assert same == ((id_a, timer_a) == (id_b, timer_b))
