"""Reading import files in chunks: CSV (plain or gzipped) and Parquet, with column mapping.

Memory stays bounded whatever the file's size: a CSV is read a record at a time and
handed on `chunk_rows` rows at a time; a Parquet file batch by batch
(`ParquetFile.iter_batches`), reading only the columns the importer uses.

CSV goes through Python's C `csv` reader rather than `pyarrow.csv.open_csv`: the Arrow
reader cannot say on which line a malformed record was (`InvalidRow.number` is None in
the streaming reader) nor keep line numbers right past a value spanning lines, and every
bad row must be reported by its line. The per-row work after parsing costs far more than
the parsing, so nothing is lost in speed.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from touchpoints.errors import InvalidInput, MissingDependency

PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class Column:
    """A column an importer reads: our name, whether it must exist, other usual names."""

    name: str
    required: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(slots=True)
class Row:
    """One record: its line (row for Parquet), our columns' values (None when blank), the
    raw record for the rejected payload, and a problem found while reading it."""

    line: int
    values: dict[str, Any]
    raw: Any
    problem: tuple[str | None, str] | None = None


class Table(Protocol):
    """A file being read: resolved columns (ours -> the file's), progress, chunks."""

    columns: dict[str, str]
    total: int
    unit: str

    def done(self) -> int: ...

    def chunks(self) -> Iterator[list[Row]]: ...

    def close(self) -> None: ...


def canonical(name: str) -> str:
    """A column name compared loosely: `Order ID`, `order-id` and `order_id` are one."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def resolve_columns(
    found: Sequence[str],
    spec: Sequence[Column],
    mapping: Mapping[str, str] | None,
    file_name: str,
) -> dict[str, str]:
    """Our column name -> the file's column name. `mapping` (ours -> theirs) comes first,
    then a loose match of our name or an alias. A required column not found raises
    InvalidInput naming it and the closest column the file has."""
    known = {column.name: column for column in spec}
    by_canonical: dict[str, str] = {}
    for name in found:
        by_canonical.setdefault(canonical(name), name)
    resolved: dict[str, str] = {}
    for ours, theirs in (mapping or {}).items():
        if ours not in known:
            close = difflib.get_close_matches(str(ours), list(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInput(
                f"the mapping names {ours!r}, which this importer does not read{hint}; "
                f"it reads: {', '.join(known)}",
                field=str(ours),
            )
        if not isinstance(theirs, str) or not theirs:
            raise InvalidInput(f"the mapping of {ours!r} must be a column name", field=ours)
        if theirs in found:
            resolved[ours] = theirs
        elif canonical(theirs) in by_canonical:
            resolved[ours] = by_canonical[canonical(theirs)]
        else:
            raise InvalidInput(
                f"the mapping sends {ours!r} to {theirs!r}, but {file_name} has no such "
                f"column{_closest_hint(theirs, (), by_canonical)}; its columns are: "
                f"{_listing(found)}",
                field=ours,
            )
    for column in spec:
        if column.name in resolved:
            continue
        for candidate in (column.name, *column.aliases):
            hit = by_canonical.get(canonical(candidate))
            if hit is not None:
                resolved[column.name] = hit
                break
        else:
            if column.required:
                raise InvalidInput(
                    f"{file_name} has no column {column.name!r}"
                    f"{_closest_hint(column.name, column.aliases, by_canonical)}; its columns "
                    f"are: {_listing(found)}. Map one with "
                    f"mapping={{{column.name!r}: '<its column>'}}",
                    field=column.name,
                )
    return resolved


def _closest_hint(name: str, aliases: Sequence[str], by_canonical: Mapping[str, str]) -> str:
    best: tuple[float, str] | None = None
    for candidate in (name, *aliases):
        for close in difflib.get_close_matches(
            canonical(candidate), list(by_canonical), n=1, cutoff=0.6
        ):
            score = difflib.SequenceMatcher(None, canonical(candidate), close).ratio()
            if best is None or score > best[0]:
                best = (score, by_canonical[close])
    return f" (the closest is {best[1]!r})" if best else ""


def _listing(found: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in found[:30])
    return shown + (", …" if len(found) > 30 else "") if found else "(none)"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


# -- opening files ------------------------------------------------------------------
def open_table(
    path: Path, spec: Sequence[Column], mapping: Mapping[str, str] | None, chunk_rows: int
) -> Table:
    """The file as a Table: Parquet when it starts with PAR1, else CSV (gzipped or not).
    Raises InvalidInput for an empty file or a missing required column, before any row."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if not magic:
        raise InvalidInput(f"{path.name} is empty", field="path")
    if magic == PARQUET_MAGIC:
        return ParquetTable(path, spec, mapping, chunk_rows)
    if path.suffix.lower() in (".parquet", ".pq"):
        raise InvalidInput(f"{path.name} is not a Parquet file (it lacks PAR1)", field="path")
    return CsvTable(path, spec, mapping, chunk_rows)


@dataclass(frozen=True, slots=True)
class BinaryFile:
    """A file's bytes (gunzipped when it is gzip), and the raw handle whose position
    tells how far the reading got."""

    stream: BinaryIO
    raw: BinaryIO
    compressed: bool

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def open_binary(path: Path) -> BinaryFile:
    raw = open(path, "rb")  # noqa: SIM115 - closed through BinaryFile.close
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream: Any = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        return BinaryFile(stream, raw, compressed)
    except BaseException:
        raw.close()
        raise


@dataclass(frozen=True, slots=True)
class TextFile:
    """A file opened as text, with the raw handle whose position tells the progress."""

    text: io.TextIOWrapper
    raw: BinaryIO

    def close(self) -> None:
        self.text.close()
        self.raw.close()


def open_text(path: Path, errors: str = "strict", newline: str = "") -> TextFile:
    """The file as UTF-8 text (a BOM skipped), gunzipped when it is gzip."""
    binary = open_binary(path)
    try:
        text = io.TextIOWrapper(binary.stream, encoding="utf-8-sig", errors=errors, newline=newline)
    except BaseException:
        binary.close()
        raise
    return TextFile(text, binary.raw)


class CsvTable:
    """A CSV file read record by record; `line` is the physical line a record starts on
    (the header is line 1), exact also past values that span lines, and the line of
    text that is not UTF-8 is named too."""

    unit = "line"

    def __init__(
        self, path: Path, spec: Sequence[Column], mapping: Mapping[str, str] | None, chunk: int
    ) -> None:
        self._path = path
        self._chunk = chunk
        self._file = open_binary(path)
        self.compressed = self._file.compressed
        self.total = os.path.getsize(path)
        self._physical = 0  # lines read so far
        self._lines = self._decoded_lines()
        try:
            header_line = self._header_line()
            self.delimiter = max(DELIMITERS, key=header_line.count)
            if not header_line.count(self.delimiter):
                self.delimiter = ","
            header = next(csv.reader([header_line], delimiter=self.delimiter), [])
            self.header = [name.strip() for name in header]
            self.columns = resolve_columns(self.header, spec, mapping, path.name)
        except BaseException:
            self.close()
            raise

    def _decoded_lines(self) -> Iterator[str]:
        """The file's lines as text, counted, each decoded on its own so that text that
        is not UTF-8 is reported with its line."""
        for data in self._file.stream:
            self._physical += 1
            if self._physical == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError:
                raise _not_utf8(self._path, self._physical) from None

    def _header_line(self) -> str:
        for line in self._lines:
            if line.strip():
                return line
        raise InvalidInput(f"{self._path.name} has no header line", field="path")

    def done(self) -> int:
        return min(self._file.raw.tell(), self.total)

    def chunks(self) -> Iterator[list[Row]]:
        reader = csv.reader(self._lines, delimiter=self.delimiter)
        width = len(self.header)
        positions = {ours: self.header.index(theirs) for ours, theirs in self.columns.items()}
        chunk: list[Row] = []
        while True:
            line = self._physical + 1  # the reader pulls lines only as a record needs them
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                chunk.append(Row(line, {}, {"line": line}, (None, f"unreadable CSV: {exc}")))
                continue
            if not any(field.strip() for field in fields):
                continue  # a blank line, or only delimiters: not a row
            raw = dict(zip(self.header, fields, strict=False))
            if len(fields) > width:
                raw["(extra fields)"] = fields[width:]
            problem = None
            if len(fields) < width or any(f.strip() for f in fields[width:]):
                problem = (None, f"{len(fields)} fields where the header has {width}")
                values = {}
            else:
                values = {ours: _clean(fields[index]) for ours, index in positions.items()}
            chunk.append(Row(line, values, raw, problem))
            if len(chunk) >= self._chunk:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._file.close()


def _not_utf8(path: Path, line: int) -> InvalidInput:
    return InvalidInput(
        f"{path.name} is not UTF-8 text (at line {line}); save it as UTF-8 "
        "(e.g. iconv -f WINDOWS-1252 -t UTF-8) and import it again",
        field="path",
    )


class ParquetTable:
    """A Parquet file read in batches of the used columns; `line` is the 1-based row."""

    unit = "row"

    def __init__(
        self, path: Path, spec: Sequence[Column], mapping: Mapping[str, str] | None, chunk: int
    ) -> None:
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # ArrowInvalid and friends for a broken file
            raise InvalidInput(f"{path.name} is not a readable Parquet file: {exc}") from exc
        self._chunk = chunk
        self._names = list(self._file.schema_arrow.names)
        self.columns = resolve_columns(self._names, spec, mapping, path.name)
        self.total = self._file.metadata.num_rows
        self._done = 0

    def done(self) -> int:
        return self._done

    def chunks(self) -> Iterator[list[Row]]:
        used = sorted(set(self.columns.values()), key=self._names.index)
        if not used:
            return
        for batch in self._file.iter_batches(batch_size=self._chunk, columns=used):
            chunk = []
            for offset, record in enumerate(batch.to_pylist()):
                values = {ours: _clean(record[theirs]) for ours, theirs in self.columns.items()}
                chunk.append(Row(self._done + offset + 1, values, record))
            self._done += batch.num_rows
            yield chunk

    def close(self) -> None:
        self._file.close()


# -- mappings -----------------------------------------------------------------------
def load_mapping(path: str | Path) -> dict[str, str]:
    """A column mapping from a YAML file of `our_column: "The File's Column"` lines, so a
    layout used every week is written down once."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML ships with the dev install
        raise MissingDependency("reading a YAML mapping needs PyYAML: pip install pyyaml") from exc
    target = Path(path)
    try:
        loaded = yaml.safe_load(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the mapping file {target}: {exc}", field="mapping"
        ) from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{target.name} is not valid YAML: {exc}", field="mapping") from exc
    if not isinstance(loaded, dict):
        raise InvalidInput(
            f"{target.name} must hold a mapping of our column names to the file's",
            field="mapping",
        )
    mapping: dict[str, str] = {}
    for ours, theirs in loaded.items():
        if not isinstance(ours, str) or not isinstance(theirs, str | int) or theirs == "":
            raise InvalidInput(
                f"{target.name}: {ours!r} must map to a column name, not {theirs!r}",
                field="mapping",
            )
        mapping[ours] = str(theirs)
    return mapping
