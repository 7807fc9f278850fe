"""Uploads: a body in the GraphQL multipart request spec's form, read into its operation.

The spec's body has three kinds of part: `operations` (the operation as JSON, each file's
place in its variables a `null`), `map` (JSON: each file part's name → the operations paths
it fills, such as `variables.files.0`), and the file parts. Any breach of that form is the
client's error, answered 400 with a JSON error naming what is wrong in `extensions.field`
(`operations`, `map`, the entry `map.0`, or its second path `map.0.1`): never a 5xx.

A part mapped to several paths is the same file object at each of them (apollo-upload-client
sends a reused `File` that way): whoever reads the files reads each object once.
"""

from collections.abc import Mapping

from cross_web import HTTPException
from starlette.datastructures import UploadFile

from api.http import decode_body


class BadMultipart(Exception):
    """The body breaks the multipart request spec: HTTP 400, naming the part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"BadMultipart({self.message!r}, field={self.field!r})"


class _NoPlace(Exception):
    """A path that leads to no file placeholder: the reason, for BadMultipart."""


def operation_with_files(parts: Mapping[str, object]) -> dict[str, object]:
    """The `operations` part with each mapped file at its paths."""
    operations = _json(parts, "operations")
    mapping = _json(parts, "map") if "map" in parts else {}
    for name, paths in mapping.items():
        entry = f"map.{name}"
        if not isinstance(paths, list) or not paths:
            message = f"`{entry}` must be a non-empty list of operations paths."
            raise BadMultipart(message, field=entry)
        file = parts.get(name)
        if not isinstance(file, UploadFile):
            message = f"`{entry}` names no file part: send a file part named {name!r}."
            raise BadMultipart(message, field=entry)
        for n, path in enumerate(paths):
            try:
                _place(operations, path, file)
            except _NoPlace as exc:
                raise BadMultipart(f"`{entry}.{n}`: {exc}", field=f"{entry}.{n}") from None
    return operations


def _json(parts: Mapping[str, object], name: str) -> dict[str, object]:
    """The part `name`: a form field holding a JSON object."""
    value = parts.get(name)
    if isinstance(value, UploadFile):
        message = f"Send `{name}` as a plain form field of the multipart body, not as a file."
        raise BadMultipart(message, field=name)
    if not isinstance(value, str):
        raise BadMultipart(f"The multipart body has no `{name}` field.", field=name)
    try:
        return decode_body(value, what=f"The `{name}` field")
    except HTTPException as exc:
        raise BadMultipart(exc.reason, field=name) from None


def _place(operations: object, path: object, file: UploadFile) -> None:
    """Put `file` at `path` (keys and list indexes joined by dots), where a `null` waits."""
    if not isinstance(path, str):
        raise _NoPlace("each path must be a string, such as 'variables.file'.")
    *steps, last = path.split(".")
    holder = operations
    for step in steps:
        holder = _child(holder, step, path)
        if holder is None:
            raise _NoPlace(f"{path!r} passes through a null.")
    if isinstance(holder, dict):
        if holder.get(last) is not None:
            raise _NoPlace(f"{path!r} holds a value, not a file's null placeholder.")
        holder[last] = file
    elif isinstance(holder, list):
        index = _index(holder, last, path)
        if holder[index] is not None:
            raise _NoPlace(f"{path!r} holds a value, not a file's null placeholder.")
        holder[index] = file
    else:
        raise _NoPlace(f"{path!r} passes through a value that is neither object nor list.")


def _child(holder: object, step: str, path: str) -> object:
    if isinstance(holder, dict):
        if step not in holder:
            raise _NoPlace(f"{path!r} names {step!r}, which the operations do not hold.")
        return holder[step]
    if isinstance(holder, list):
        return holder[_index(holder, step, path)]
    raise _NoPlace(f"{path!r} passes through a value that is neither object nor list.")


def _index(holder: list[object], step: str, path: str) -> int:
    if not (step.isascii() and step.isdigit()) or int(step) >= len(holder):
        message = f"{path!r}: {step!r} is no index of a list of {len(holder)}."
        raise _NoPlace(message)
    return int(step)
