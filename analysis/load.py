"""Read result sessions: metadata.json once per session, runs.jsonl one run per line.

The results format is bench/results_format.py (docs/results-format.md), the one module of
bench that analysis imports: this module checks every line against it instead of trusting
the writer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import AnalysisError
from bench import results_format as fmt

# The columns of a session's runs: every run field but the version, which is checked, then
# dropped. A missing field is read as null (a metric: not measured).
RUN_COLUMNS = fmt.RUN_FIELDS[1:]


# A runs.jsonl line that was skipped, with where it is and why.
LineProblem = fmt.DamagedLine


@dataclass
class Session:
    """One `python -m bench` session directory."""
    path: Path
    shown_path: str          # the path as the user gave it, for messages
    metadata: dict[str, Any]
    runs: pd.DataFrame = field(repr=False, default=None)  # type: ignore[assignment]
    problems: list[LineProblem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.metadata.get("session") or self.path.name)

    @property
    def stack(self) -> str:
        return str(self.metadata["stack_outputs"].get("stack") or self.name)

    @property
    def identity(self) -> dict[str, Any]:
        return fmt.identity(self.metadata)

    def identity_text(self) -> str:
        ident = self.identity
        tools = ", ".join(f"{k} {v}" for k, v in ident["tool_versions"].items()) or "no tools"
        link = ident["link_rate"] or "unshaped"
        return f"{ident['provider']}/{ident['mode']}, link {link}, MTU {ident['mtu_bytes']}, {tools}"


def is_session(path: Path) -> bool:
    return (path / "metadata.json").is_file()


def resolve(paths: list[str], default_root: str = "results") -> list[tuple[Path, str]]:
    """Session directories for the command-line paths.

    A session directory is taken as is; a directory of sessions stands for its latest session
    (names are YYYYmmdd-HHMMSS-STACK, so the last in name order). No path: the latest in results/.
    """
    if not paths:
        root = Path(default_root)
        if not root.is_dir():
            raise AnalysisError(f"no results: {default_root}/ does not exist; run `python -m bench` "
                                "first or pass a results directory")
        paths = [default_root]
    found: list[tuple[Path, str]] = []
    for shown in paths:
        path = Path(shown)
        if not path.exists():
            raise AnalysisError(f"no results: {shown} does not exist")
        if is_session(path):
            found.append((path, shown))
            continue
        sessions = sorted(p for p in path.iterdir() if p.is_dir() and is_session(p)) if path.is_dir() else []
        if not sessions:
            raise AnalysisError(f"no results: {shown} holds no session (no metadata.json in it or in "
                                "its subdirectories); run `python -m bench` first")
        found.append((sessions[-1], str(Path(shown) / sessions[-1].name)))
    unique: dict[Path, tuple[Path, str]] = {}
    for path, shown in found:
        unique.setdefault(path.resolve(), (path, shown))
    return list(unique.values())


def read_metadata(path: Path, shown: str) -> dict[str, Any]:
    meta_path = f"{shown}/metadata.json"
    try:
        return fmt.parse_metadata((path / "metadata.json").read_bytes())
    except OSError as exc:
        raise AnalysisError(f"cannot read {meta_path}: {exc.strerror or exc}") from None
    except fmt.UnreadableVersion as exc:
        raise AnalysisError(f"{meta_path} has format_version {exc.version!r}; this analysis reads "
                            f"version {fmt.readable_versions_text()}: use the overlay-bench that wrote it") from None
    except fmt.FormatError as exc:
        raise AnalysisError(f"{meta_path}: {exc} (see docs/results-format.md): the session is "
                            "damaged; leave it out or repair the file") from None


# A runs.jsonl larger than this is parsed half here, half in a worker process (JSON decoding
# is most of the time of a large analysis).
PARALLEL_BYTES = 8_000_000


def read_runs(path: Path, shown: str, pool=None) -> tuple[pd.DataFrame, list[LineProblem]]:
    """The valid runs of one runs.jsonl and the lines skipped, with file and line number.

    With `pool` (analysis.parallel.workers), a large file is parsed in two processes.
    """
    runs_path = f"{shown}/runs.jsonl"
    file = path / "runs.jsonl"
    try:
        with open(file, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return _frame([]), []
    except OSError as exc:
        raise AnalysisError(f"cannot read {runs_path}: {exc.strerror or exc}") from None
    mid = data.find(b"\n", len(data) // 2) if len(data) > PARALLEL_BYTES and pool is not None else -1
    if mid == -1:
        frame, problems = parse_lines(data, 1, runs_path)
    else:
        # The worker reads its half from the file itself: nothing large goes through a pipe.
        second = pool.submit(_parse_file_part, str(file), mid + 1, data.count(b"\n", 0, mid + 1) + 1, runs_path)
        frame, problems = parse_lines(data[:mid + 1], 1, runs_path)
        frame_2, problems_2 = second.result()
        frame = pd.concat([frame, frame_2], ignore_index=True)
        problems += problems_2
    problems.sort(key=lambda p: p.line)
    return frame, problems


def _text(data: bytes, first_line: int, runs_path: str) -> tuple[str, list[LineProblem]]:
    """The text of `data`; a line that is not UTF-8 is reported and read as blank (skipped)."""
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    lines, problems = [], []
    for lineno, raw in enumerate(data.split(b"\n"), first_line):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                fmt.parse_run_line(raw)
            except fmt.FormatError as exc:
                problems.append(LineProblem(runs_path, lineno, str(exc)))
            lines.append("")
    return "\n".join(lines), problems


def _parse_file_part(file: str, offset: int, first_line: int, runs_path: str):
    with open(file, "rb") as handle:
        handle.seek(offset)
        return parse_lines(handle.read(), first_line, runs_path)


def parse_lines(data: bytes, first_line: int, runs_path: str) -> tuple[pd.DataFrame, list[LineProblem]]:
    """Runs from JSON lines (the first numbered `first_line`), and the lines skipped.

    A line is a run when it passes bench/results_format.py's checks (`run_problem`), applied
    here column by column on the whole file at once: parsing is the only per-line cost.
    """
    text, problems = _text(data, first_line, runs_path)
    body = text.rstrip("\n")
    parsed = None
    if body and "\n\n" not in body:
        # Fast path: all lines in one call of the C parser. Anything unusual (a damaged or
        # blank line, two objects on one line) falls back to line by line, which says where.
        try:
            parsed = fmt.loads("[" + body.replace("\n", ",") + "]")
        except ValueError:
            parsed = None
        if parsed is not None and (len(parsed) != body.count("\n") + 1
                                   or not all(type(rec) is dict for rec in parsed)):
            parsed = None
    if parsed is not None:
        records, lines = parsed, range(first_line, first_line + len(parsed))
    else:
        records, lines = [], []
        for lineno, line in enumerate(text.split("\n"), first_line):
            if not line.strip():
                continue
            try:
                records.append(fmt.parse_run_line(line))
            except fmt.FormatError as exc:
                problems.append(LineProblem(runs_path, lineno, str(exc)))
                continue
            lines.append(lineno)
    frame = _frame(records)
    frame["line"] = np.asarray(lines, dtype=int)
    try:
        reasons = _problems(frame)
    except TypeError:
        # A value pandas cannot hash or compare (a list where a name should be): the checks
        # one record at a time, which are the same.
        reasons = np.array([fmt.run_problem(rec) for rec in records], dtype=object)
    bad = pd.notna(reasons)
    if bad.any():
        for line, reason in zip(frame["line"].to_numpy()[bad], reasons[bad]):
            problems.append(LineProblem(runs_path, int(line), reason))
        frame = frame[~bad].reset_index(drop=True)
    for column in fmt.NUMERIC_FIELDS:
        frame[column] = _numbers(frame[column])
    frame["streams"] = frame["streams"].astype(int)
    return frame.drop(columns=["format_version"]), problems


def _problems(frame: pd.DataFrame) -> np.ndarray:
    """Each row's reason for not being a valid run (None when it is one): the checks of
    fmt.run_problem, in its order, column by column (the first reason found is the one told)."""
    reasons = np.full(len(frame), None, dtype=object)
    bad = np.zeros(len(frame), dtype=bool)

    def flag(wrong, reason: str) -> None:
        wrong = np.asarray(wrong, dtype=bool) & ~bad
        reasons[wrong] = reason
        bad[wrong] = True

    def is_type(values: pd.Series, kind: type) -> np.ndarray:
        return values.map(lambda v: isinstance(v, kind)).to_numpy(dtype=bool)

    for key in sorted(fmt.REQUIRED_FIELDS):
        flag(frame[key].isna(), f"missing {key}")
    version = frame["format_version"].astype(object)  # Python ints: messages show 2, not np.int64(2)
    wrong_version = ~version.isin(fmt.READABLE_VERSIONS) & version.notna()
    if frame["format_version"].dtype == object:
        wrong_version |= is_type(version, bool)  # True == 1, yet no version
    if wrong_version.any():
        shown = version.map(repr)
        for value in shown[wrong_version & ~bad].unique():
            flag(wrong_version & (shown == value), f"format_version {value}, expected {fmt.readable_versions_text()}")
    for column, allowed in fmt.ENUM_FIELDS.items():
        flag(~frame[column].isin(allowed), f"{column} is not one of {', '.join(allowed)}")
    for column, allowed in fmt.OPTIONAL_ENUM_FIELDS.items():
        flag(frame[column].notna() & ~frame[column].isin(allowed),
             f"{column} is not one of {', '.join(allowed)} (or null)")
    for column in fmt.STRING_FIELDS:
        values = frame[column]
        if pd.api.types.infer_dtype(values, skipna=True) != "string":
            flag(~is_type(values, str) & values.notna(), f"{column} is not a string")
    for column in fmt.NUMERIC_FIELDS:
        values = frame[column]
        if values.dtype.kind in "iuf":
            # Plain numbers (null read as NaN): only range left to check.
            flag(np.isinf(values), f"{column} is not a finite number")
            flag(values < 0, f"{column} is negative")
            continue
        # Anything else (a boolean, a string, NaN or Infinity as written): value by value.
        present = values.astype(object)
        present = present[present.notna()]
        found = present.map(fmt.number_problem)
        for problem in found.dropna().unique():
            wrong = np.zeros(len(frame), dtype=bool)
            wrong[found.index[(found == problem).to_numpy()]] = True
            flag(wrong, f"{column} {problem}")
    for column in fmt.POSITIVE_FIELDS:
        flag(~(_numbers(frame[column]) > 0), f"{column} must be a positive number")
    return reasons


def _numbers(values: pd.Series) -> pd.Series:
    """A column as floats (null and anything that is not a number as NaN)."""
    if values.dtype.kind in "iuf":
        return values.astype(float)
    return pd.to_numeric(values.astype(object), errors="coerce").astype(float)


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=fmt.RUN_FIELDS)
    for column in RUN_COLUMNS:
        if column in fmt.NUMERIC_FIELDS:
            continue
        # Missing is None whatever pandas inferred (NaN in a mixed column, None in an empty one).
        values = frame[column].astype(object)
        frame[column] = values.where(values.notna(), None)
    return frame


def load(paths: list[str], default_root: str = "results", pool=None) -> list[Session]:
    """Every session named on the command line, with its runs and its skipped lines."""
    found = [(path, shown, read_metadata(path, shown)) for path, shown in resolve(paths, default_root)]
    sessions = []
    for path, shown, metadata in found:
        runs, problems = read_runs(path, shown, pool)
        sessions.append(Session(path=path, shown_path=shown, metadata=metadata, runs=runs,
                                problems=problems))
    if not any(len(s.runs) for s in sessions):
        names = ", ".join(s.shown_path for s in sessions)
        raise AnalysisError(f"no results: no readable run in {names}; run `python -m bench` "
                            "(or pass a session that has runs)")
    return sessions


def assign_setups(sessions: list[Session], merge: bool) -> dict[str, list[Session]]:
    """Group sessions whose stack and identifying metadata match; each group is one `setup` label.

    Sessions that differ (other stack, other settings, other tool versions) stay apart unless
    `merge`.
    """
    if merge:
        label = "+".join(dict.fromkeys(s.stack for s in sessions))
        return {label: list(sessions)}
    groups: dict[str, list[Session]] = {}
    for session in sessions:
        # The stack name counts too: two stacks are two setups even when configured alike.
        key = json.dumps([session.stack, session.identity], sort_keys=True)
        groups.setdefault(key, []).append(session)
    by_stack: dict[str, list[str]] = {}
    for key, members in groups.items():
        by_stack.setdefault(members[0].stack, []).append(key)
    setups: dict[str, list[Session]] = {}
    for stack, keys in by_stack.items():
        if len(keys) == 1:
            setups[stack] = groups[keys[0]]
            continue
        # Same stack name, different settings: name each by what differs.
        idents = [groups[k][0].identity for k in keys]
        differing = [k for k in fmt.IDENTITY_FIELDS if len({json.dumps(i[k], sort_keys=True) for i in idents}) > 1]
        for key, ident in zip(keys, idents):
            parts = []
            for k in differing:
                if k == "tool_versions":
                    others = [i["tool_versions"] for i in idents if i is not ident]
                    parts += [f"{t} {v}" for t, v in ident["tool_versions"].items()
                              if any(o.get(t) != v for o in others)]
                    parts += [f"no {t}" for o in idents for t in o["tool_versions"]
                              if t not in ident["tool_versions"] and f"no {t}" not in parts]
                elif k == "link_rate":
                    parts.append(f"link {ident[k] or 'unshaped'}")
                elif k == "mtu_bytes":
                    parts.append(f"MTU {ident[k]}")
                else:
                    parts.append(f"{k} {ident[k]}")
            setups[f"{stack} ({', '.join(parts) or groups[key][0].name})"] = groups[key]
    return setups


def runs_table(setups: dict[str, list[Session]]) -> pd.DataFrame:
    """All runs of all setups, one row per run (tidy), with setup and session columns."""
    frames = []
    for label, members in setups.items():
        for session in members:
            frame = session.runs.copy()
            frame.insert(0, "session", session.name)
            frame.insert(0, "setup", label)
            frames.append(frame)
    runs = pd.concat(frames, ignore_index=True)
    runs.insert(2, "line", runs.pop("line"))
    # Counts read as floats (JSON null -> NaN); keep them whole in runs.csv.
    for column in ("run_index", "retransmits"):
        if (runs[column].dropna() % 1 == 0).all():
            runs[column] = runs[column].astype("Int64")
    # A resumed session may hold the same ok/skipped run twice; the last line wins.
    done = runs["status"] != "failed"
    dup = runs[done].duplicated(["session", "run_id"], keep="last")
    runs = runs.drop(index=dup[dup].index).reset_index(drop=True)
    runs["udp_target_mbps"] = runs["udp_target_mbps"].astype(float)
    return runs


def node_mtus(setups: dict[str, list[Session]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(setup, node) -> (host MTU, overlay MTU), the smallest seen over the setup's sessions."""
    mtus: dict[tuple[str, str], tuple[float, float]] = {}
    for label, members in setups.items():
        for session in members:
            for node, info in (session.metadata.get("nodes") or {}).items():
                if not isinstance(info, dict):
                    continue
                host, overlay = info.get("host_mtu_bytes"), info.get("overlay_mtu_bytes")
                host = float(host) if isinstance(host, (int, float)) else np.nan
                overlay = float(overlay) if isinstance(overlay, (int, float)) else np.nan
                old = mtus.get((label, node))
                if old:
                    host, overlay = np.fmin(host, old[0]), np.fmin(overlay, old[1])
                mtus[(label, node)] = (host, overlay)
    return mtus
