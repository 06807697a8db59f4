"""A run's inputs as submission and finishing see them: which are missing, and the text of the files a kind plans from.

The files a kind names (``KindSpec.input_files``, a CSV sweep's member file) are read from the
run's ``inputs/`` by submission, to plan the tasks, and again by finishing, to give each
member's parameters in the manifest: the same bytes, so the same members.
"""
from __future__ import annotations

from dmscontract.errors import PermanentRunError
from dmscontract.run_spec import RunSpec
from dmscontract.run_store import RunStore
from dmscontract.kinds import kind_for

MAX_INPUT_FILE_BYTES = 16 * 1024 * 1024  # a file planning reads (a sweep's member CSV)


def missing_inputs(store: RunStore, run_id: str, spec: RunSpec) -> list[tuple[str, str]]:
    """(field path, blob) of every input, shared input and file the kind reads (a sweep's CSV) not among the run's inputs."""
    present = {b.name for b in store.list(store.inputs_prefix(run_id))}
    prefix = store.inputs_prefix(run_id)
    wanted = spec.named_blobs() + kind_for(spec.kind).input_files(spec)
    return [(where, blob) for where, blob in wanted if prefix + blob not in present]


def read_input_files(store: RunStore, run_id: str, spec: RunSpec) -> dict[str, str]:
    """The text of each input the run's kind plans from (a CSV sweep's member file), by blob name;
    ``PermanentRunError`` naming the field for one too big or not UTF-8."""
    files = {}
    for where, name in kind_for(spec.kind).input_files(spec):
        blob = store.container.get_blob_client(store.inputs_prefix(run_id) + name)
        size = blob.get_blob_properties().size
        if size > MAX_INPUT_FILE_BYTES:
            raise PermanentRunError(run_id, [f"{where}: '{name}' is {size:,} bytes; a file planning reads may have at most "
                                             f"{MAX_INPUT_FILE_BYTES:,}"])
        try:
            files[name] = blob.download_blob().readall().decode("utf-8")
        except UnicodeDecodeError:
            raise PermanentRunError(run_id, [f"{where}: '{name}' is not UTF-8 text"]) from None
    return files
