"""Trusted documents (persisted queries) for production frontends.

A frontend's build lists its documents in a manifest, `{"<sha256>": "<document>", …}`, as
GraphQL Code Generator's client preset writes it (`persistedDocuments`). Given the manifest
(`TRUSTED_DOCUMENTS_MANIFEST`), a request may send a listed document's hash in place of its
text: `"documentId": "sha256:<hash>"` (GraphQL over HTTP's persisted documents) or Apollo's
`"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hash>"}}`. With
`TRUSTED_DOCUMENTS=only`, every operation, over every transport, must be a trusted document:
one of the manifest's, one of the service's own pages' (the monitor's `documents.graphql`),
or an introspection query (the schema's, for GraphiQL and codegen, while `INTROSPECTION` is
on). A document counts as the same whatever its spacing and comments: it is compared printed.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    ValidationRule,
    print_ast,
)

from api.admission import parsed
from infra.settings import Settings

PAGES = (Path(__file__).parent / "static" / "monitor" / "documents.graphql",)  # our own pages'
NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_TRUSTED = "DOCUMENT_NOT_TRUSTED"


class UnknownDocument(Exception):
    """A request named a document by a hash the manifest does not list."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"No trusted document has the hash {key}: send the document's text, or a hash "
            "from the manifest this service was given (TRUSTED_DOCUMENTS_MANIFEST)."
        )


class TrustedDocuments:
    def __init__(self, manifest: Mapping[str, str], *, only: bool, own: Iterable[str] = ()) -> None:
        self.by_hash = {key.removeprefix("sha256:"): text for key, text in manifest.items()}
        self.only = only
        self._printed = frozenset(
            print_ast(parsed(text)) for text in [*self.by_hash.values(), *own]
        )

    @classmethod
    def load(cls, settings: Settings) -> "TrustedDocuments":
        """From the settings: the manifest's documents (checked against their hashes), and
        the service's own pages' documents."""
        manifest: dict[str, str] = {}
        if settings.trusted_documents_manifest is not None:
            manifest = json.loads(settings.trusted_documents_manifest.read_text())
            for key, text in manifest.items():
                if key.removeprefix("sha256:") != _sha256(text):
                    raise ValueError(f"{settings.trusted_documents_manifest}: {key} is not the"
                                     " SHA-256 of its document")  # fmt: skip
        own = [path.read_text() for path in PAGES]
        return cls(manifest, only=settings.trusted_documents == "only", own=own)

    def resolve(self, body: dict[str, object]) -> dict[str, object]:
        """The request with its document's text, where it named the document by its hash."""
        key = _document_key(body)
        if key is None or body.get("query") is not None:
            return body
        text = self.by_hash.get(key)
        if text is None:
            raise UnknownDocument(key)
        return {**body, "query": text}

    def admits(self, document: DocumentNode) -> bool:
        return not self.only or _introspection(document) or print_ast(document) in self._printed

    def rule(self) -> type[ASTValidationRule]:
        """A validation rule refusing what `admits` does not: every transport validates."""
        trusted = self

        class TrustedDocumentRule(ValidationRule):
            def enter_document(self, node: DocumentNode, *_: object) -> None:
                if not trusted.admits(node):
                    self.report_error(
                        GraphQLError(
                            "This service runs trusted documents only (TRUSTED_DOCUMENTS=only):"
                            " send a document of its manifest, by its hash or its text.",
                            extensions={"code": NOT_TRUSTED},
                        )
                    )

        return TrustedDocumentRule


def _document_key(body: Mapping[str, object]) -> str | None:
    """The hash a request names its document by, if it does."""
    document_id = body.get("documentId")
    if isinstance(document_id, str):
        return document_id.removeprefix("sha256:")
    extensions = body.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get("persistedQuery"), dict):
        key = extensions["persistedQuery"].get("sha256Hash")
        return key if isinstance(key, str) else None
    return None


def _introspection(document: DocumentNode) -> bool:
    """Every operation asks only about the schema (`__schema`, `__type`, `__typename`)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(
        isinstance(selection, FieldNode) and selection.name.value.startswith("__")
        for operation in operations
        for selection in operation.selection_set.selections
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
