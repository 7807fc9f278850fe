"""Operations generated from the schema, valid and invalid, and hostile bodies, against a
running server: never a 5xx, never an INTERNAL error, never a traceback in its log. The
schema is the one the server gives the standard introspection query, as a client loads it."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    StringValueNode,
    build_client_schema,
    build_schema,
    get_introspection_query,
    get_named_type,
    is_leaf_type,
    is_required_input_field,
    print_schema,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from infra.settings import Settings
from tests.helpers import (
    BOUNDARY,
    CREATE_EXPENSES,
    ELF,
    MALFORMED_BODIES,
    ODD_BODIES,
    PDF,
    PNG,
    Part,
    data,
    expense,
    multipart_body,
)
from tests.processes import cli, env_without_config, free_port, running, wait_ready

pytestmark = pytest.mark.slow

Operations = Callable[..., st.SearchStrategy[str]]
SCALARS = {
    "Date": st.dates().map(lambda d: StringValueNode(value=d.isoformat())),
    "DateTime": st.datetimes(timezones=st.just(UTC)).map(
        lambda d: StringValueNode(value=d.isoformat())
    ),
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(
        lambda d: StringValueNode(value=str(d))
    ),
    "Upload": st.text(max_size=20).map(lambda name: StringValueNode(value=name)),  # not a file
}
FUZZ = examples(
    max_examples=75,  # x4 cases: 300 operations, about 30 s on a 2-core CI machine
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Served(NamedTuple):
    client: httpx.Client  # with the company's key
    log: Path
    company_id: str


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str
) -> Iterator[Served]:
    """A served API (no worker: queued batches wait) and a client with a company's key."""
    if database_url.startswith("sqlite"):
        pytest.skip("fuzzed on PostgreSQL, production's database; the API is the same on both")
    home = tmp_path_factory.mktemp("fuzz")
    env = env_without_config(
        DATABASE_URL=Settings(database_url=database_url).database_url,
        REDIS_URL=redis_url,
        API_RATE_LIMIT_PER_MINUTE="1000000",
    )
    company = json.loads(cli("create-company", "--name", "Fuzz Ltd", cwd=home, env=env))
    port = free_port()
    with running("serve", "--port", str(port), cwd=home, env=env):
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        headers = {"Authorization": f"Bearer {company['apiKey']}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            yield Served(client, home / "serve.log", company["companyId"])


@pytest.fixture(scope="module")
def served_schema(server: Served) -> str:
    """The server's schema as graphql-core's standard introspection query reads it."""
    client = server.client
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
        one_of=True,
    )
    response = client.post("/graphql", json={"query": query}, timeout=30)
    return print_schema(build_client_schema(response.json()["data"]))


def _answered_cleanly(client: httpx.Client, body: object) -> None:
    response = client.post("/graphql", json=body, timeout=30)
    assert response.status_code < 500, (body, response.text)
    errors = response.json().get("errors") or []
    assert "INTERNAL" not in {e.get("extensions", {}).get("code") for e in errors}, body


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("operations", [queries, mutations], ids=["queries", "mutations"])
def test_generated_operations_never_break_the_server(
    server: Served, served_schema: str, operations: Operations, mode: Mode
) -> None:
    client, log, _ = server

    @FUZZ
    @given(document=operations(served_schema, custom_scalars=SCALARS, mode=mode))
    def fuzz(document: str) -> None:
        _answered_cleanly(client, {"query": document})

    fuzz()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE], ids=["valid", "invalid"])
def test_generated_operations_streamed_over_sse_never_break_the_server(
    server: Served, served_schema: str, mode: Mode
) -> None:
    """The HTTP stream transport (graphql-sse) answers every operation as a stream of results
    that ends: valid or not, never a 5xx or INTERNAL."""
    client, log, _ = server

    @examples(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(document=queries(served_schema, custom_scalars=SCALARS, mode=mode))
    def fuzz(document: str) -> None:
        sse = {"Accept": "text/event-stream"}
        response = client.post("/graphql", json={"query": document}, headers=sse, timeout=30)
        assert response.status_code < 500, (document, response.text)
        assert "INTERNAL" not in response.text, document
        if response.status_code == 200:
            assert response.text.rstrip().endswith("event: complete\r\ndata:"), response.text

    fuzz()
    assert "Traceback" not in log.read_text()


HOSTILE = [*MALFORMED_BODIES, *ODD_BODIES]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_never_break_the_server(server: Served, body: bytes) -> None:
    client, log, _ = server
    response = client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code < 500, response.text
    codes = [e["extensions"]["code"] for e in response.json().get("errors", [])]
    assert "INTERNAL" not in codes, response.text
    assert "Traceback" not in log.read_text()


# Multipart bodies (the GraphQL multipart request spec) built from the schema: an operation of
# every mutation that takes files, its variables generated from their input types with a
# `null` wherever a file goes, a map sending parts to those places (one part to several, as
# apollo-upload-client does), to places that are not, or a map that is no map; and parts
# that are files, JSON, or cut short.
UPLOAD = object()  # where a generated variable value takes a file
FILES = st.sampled_from([PDF, PNG, ELF, b"", b"%PDF-1.7 but cut"])
JUNK_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


def _uploading_fields(sdl: str) -> list[tuple[str, GraphQLField]]:
    """The mutations with an Upload anywhere in their arguments."""
    mutation = build_schema(sdl).mutation_type
    assert mutation is not None
    return [
        (name, field)
        for name, field in mutation.fields.items()
        if any(_takes_upload(arg.type, set()) for arg in field.args.values())
    ]


def _takes_upload(kind: GraphQLInputType, seen: set[str]) -> bool:
    named = get_named_type(kind)
    if isinstance(named, GraphQLInputObjectType) and named.name not in seen:
        seen.add(named.name)
        return any(_takes_upload(f.type, seen) for f in named.fields.values())
    return named.name == "Upload"


def _values(kind: GraphQLInputType, ids: list[str]) -> st.SearchStrategy[object]:
    """A variable's value: mostly of its type, files as UPLOAD."""
    if isinstance(kind, GraphQLNonNull):
        return _of_type(kind.of_type, ids)
    return st.none() | _of_type(kind, ids)


def _of_type(kind: GraphQLInputType, ids: list[str]) -> st.SearchStrategy[object]:
    if isinstance(kind, GraphQLList):
        return st.lists(_values(kind.of_type, ids), max_size=3)
    if isinstance(kind, GraphQLInputObjectType):
        fields = {name: _values(field.type, ids) for name, field in kind.fields.items()}
        required = {n for n, f in kind.fields.items() if is_required_input_field(f)}
        return st.fixed_dictionaries(
            {n: fields[n] for n in required},
            optional={n: v for n, v in fields.items() if n not in required},
        )
    if isinstance(kind, GraphQLEnumType):
        return st.sampled_from(list(kind.values))
    scalars: dict[str, st.SearchStrategy[object]] = {
        "Upload": st.just(UPLOAD),
        "ID": st.sampled_from(ids) | st.text(max_size=8),
        "String": st.sampled_from(["429", "INPUT", "USD"]) | st.text(max_size=8),
        "Int": st.integers(-5, 2000),
        "Float": st.floats(allow_nan=False),
        "Boolean": st.booleans(),
        "Date": st.dates().map(str),
        "DateTime": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        "Decimal": st.decimals("0.01", "99999", places=2).map(str),
    }
    return scalars.get(kind.name, JUNK_JSON)  # type: ignore[union-attr]


def _placeholders(value: object, path: str) -> tuple[object, list[str]]:
    """The value with each UPLOAD a `null`, and the paths of those nulls."""
    if value is UPLOAD:
        return None, [path]
    if isinstance(value, dict | list):
        keyed = value.items() if isinstance(value, dict) else enumerate(value)
        out = [(k, _placeholders(v, f"{path}.{k}")) for k, v in keyed]
        paths = [p for _, (_, ps) in out for p in ps]
        if isinstance(value, dict):
            return {k: v for k, (v, _) in out}, paths
        return [v for _, (v, _) in out], paths
    return value, []


def _operation(kind: str, name: str, field: GraphQLField) -> str:
    """An operation of one root field, every argument a variable."""
    declared = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
    passed = ", ".join(f"{a}: ${a}" for a in field.args)
    selection = " { __typename }" if not is_leaf_type(get_named_type(field.type)) else ""
    return f"{kind}({declared}) {{ {name}({passed}){selection} }}"


@st.composite
def _multipart(draw: st.DrawFn, fields: list[tuple[str, GraphQLField]], ids: list[str]) -> bytes:
    name, field = draw(st.sampled_from(fields))
    query = _operation("mutation", name, field)
    generated = {a: draw(_values(arg.type, ids)) for a, arg in field.args.items()}
    variables, places = _placeholders(generated, "variables")
    path: st.SearchStrategy[object] = st.sampled_from(places) if places else JUNK_JSON
    path |= st.text(alphabet="variables.012xyz", max_size=24) | JUNK_JSON
    parts_sent = draw(st.integers(0, 3))
    mapping = draw(
        st.dictionaries(
            st.sampled_from([str(n) for n in range(parts_sent + 1)] + ["operations"]),
            st.lists(path, min_size=1, max_size=3) | JUNK_JSON,
            max_size=3,
        )
        | JUNK_JSON
    )
    operations = {"query": query, "variables": draw(st.just(variables) | JUNK_JSON)}
    json_as_file = draw(st.sampled_from([None, "operations", "map"]))
    parts: list[Part] = [
        (key, "x.json" if key == json_as_file else None, json.dumps(value).encode())
        for key, value in (("operations", operations), ("map", mapping))
    ]
    parts += [(str(n), f"f{n}.pdf", draw(FILES)) for n in range(parts_sent)]
    body = multipart_body(draw(st.permutations(parts)))
    return body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


def test_generated_multipart_bodies_never_break_the_server(
    server: Served, served_schema: str
) -> None:
    client, log, company_id = server
    variables = {"companyId": company_id, "expenses": [expense()]}
    created = client.post("/graphql", json={"query": CREATE_EXPENSES, "variables": variables})
    ids = [company_id, data(created.json())["createExpenses"]["expenses"][0]["id"]]
    kind = f"multipart/form-data; boundary={BOUNDARY}"

    @examples(FUZZ, max_examples=400)  # about 15 s
    @given(body=_multipart(_uploading_fields(served_schema), ids))
    def fuzz(body: bytes) -> None:
        response = client.post("/graphql", content=body, headers={"Content-Type": kind})
        assert response.status_code < 500, (body, response.text)
        errors = response.json().get("errors") or []
        assert "INTERNAL" not in {e.get("extensions", {}).get("code") for e in errors}, body
        port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        after = client.post("/graphql", json={"query": "{ __typename }"})
        assert after.json() == {"data": {"__typename": "Query"}}
        assert after.extensions["network_stream"].get_extra_info("client_addr")[1] == port, body

    fuzz()
    assert "Traceback" not in log.read_text()


# A record's life: updates, voids and reads of real records of each type, of a voided one and
# of ids that name none, their variables generated from the schema's input types.
RECORD_FIELDS = {"record", "updateExpenses", "updateBills", "updateInvoices", "voidRecords"}
LINES = [{"amount": "10.00", "accountId": "200", "taxRateId": "NONE"}]
CREATE_RECORDS = """
mutation($c: ID!, $e: [ExpenseInput!]!, $b: [BillInput!]!, $i: [InvoiceInput!]!) {
  createExpenses(companyId: $c, expenses: $e) { expenses { id } }
  createBills(companyId: $c, bills: $b) { bills { id } }
  createInvoices(companyId: $c, invoices: $i) { invoices { id } }
}"""
VOID = "mutation($c: ID!, $r: [ID!]!) { voidRecords(companyId: $c, recordIds: $r) { syncBatchId } }"


def _records(client: httpx.Client, company_id: str) -> list[str]:
    """Ids of two expenses (the second voided), a bill and an invoice."""
    dated = {"issueDate": "2026-11-01", "dueDate": "2026-12-01", "currency": "USD"}
    variables = {
        "c": company_id,
        "e": [expense(), expense()],
        "b": [{**dated, "vendorName": "Acme", "lines": LINES}],
        "i": [{**dated, "customerName": "Beta", "lines": LINES}],
    }
    made = data(
        client.post("/graphql", json={"query": CREATE_RECORDS, "variables": variables}).json()
    )
    ids = [made["createExpenses"]["expenses"][n]["id"] for n in (0, 1)]
    ids += [made["createBills"]["bills"][0]["id"], made["createInvoices"]["invoices"][0]["id"]]
    voided = client.post(
        "/graphql", json={"query": VOID, "variables": {"c": company_id, "r": ids[1:2]}}
    )
    assert data(voided.json())["voidRecords"]["syncBatchId"]
    return ids


def _record_fields(sdl: str) -> list[tuple[str, str, GraphQLField]]:
    """The root fields of a record's life, with their operation's kind."""
    schema = build_schema(sdl)
    roots = [("query", schema.query_type), ("mutation", schema.mutation_type)]
    return [
        (kind, name, field)
        for kind, root in roots
        if root is not None
        for name, field in root.fields.items()
        if name in RECORD_FIELDS
    ]


@st.composite
def _record_operation(
    draw: st.DrawFn, fields: list[tuple[str, str, GraphQLField]], ids: list[str]
) -> dict[str, object]:
    kind, name, field = draw(st.sampled_from(fields))
    generated = {a: draw(_values(arg.type, ids)) for a, arg in field.args.items()}
    variables, _ = _placeholders(generated, "variables")
    return {"query": _operation(kind, name, field), "variables": variables}


def test_generated_record_changes_never_break_the_server(
    server: Served, served_schema: str
) -> None:
    client, log, company_id = server
    fields = _record_fields(served_schema)
    assert {name for _, name, _ in fields} == RECORD_FIELDS
    ids = [company_id, *_records(client, company_id)]

    @examples(FUZZ, max_examples=200)  # about 10 s
    @given(body=_record_operation(fields, ids))
    def fuzz(body: dict[str, object]) -> None:
        _answered_cleanly(client, body)

    fuzz()
    assert "Traceback" not in log.read_text()
