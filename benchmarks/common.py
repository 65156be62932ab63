"""Shared plumbing of the benchmarks: emulator process, seeding, child runs, result output.

Why a module of its own: each benchmark compares a real console script with a bare loop in the
*same* run against the *same* emulator, so both sides must be started, fed, timed and measured
the same way. Everything that could bias one side (how stdout is drained, how peak RSS is read,
whether the token is fetched inside or outside the timing) lives here once.

Measurement choices:

* Children run as their own processes, stdout drained by a thread of this process that only
  counts RECORD messages (``bytes.count`` on 1 MiB chunks), so the sink is never the bottleneck.
* CPU time comes from ``os.wait4`` on that one child, not from ``RUSAGE_CHILDREN`` (which
  would mix in earlier children). Peak RSS is the child's ``VmHWM`` from ``/proc/PID/status``,
  sampled every 10 ms until exit (the high-water mark is monotonic, so only growth in the last
  10 ms could be missed). ``ru_maxrss`` is *not* used for it: on Linux, exec keeps the
  high-water mark of the replaced address space, and a child spawned by this (large) parent
  starts from the parent's RSS; it is stored as ``ru_maxrss_mb`` for reference only.
* Wall time is from spawn to exit, so interpreter start, imports, discovery and token minting
  count against the connector, as they do for a user. The rate after the first RECORD byte is
  reported as well ("steady"), which isolates the per-record cost.
* Emulator CPU seconds during each run come from ``/proc/PID/stat``, to show that the server is
  not what limits a run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = RESULTS_DIR / "cache"
BIN = Path(sys.executable).parent
"""The venv's bin folder: console scripts are looked up next to the running interpreter."""

API_PREFIX = "/ia/api/v1"
CONTROL_PREFIX = "/_emulator"
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-secret"  # public demo credential of the emulator
USERNAME = "admin@DEMO"

DEFAULT_OBJECT = "accounts-receivable/customer"
QUERY_PAGE = 4000
"""The query service's maximum page size; the minimum call count is ceil(N / QUERY_PAGE)."""
WRITE_BATCH = 500
"""Intacct's maximum records per batch write; the minimum call count is ceil(N / WRITE_BATCH)."""

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_RECORD_MARKERS = (b'"type":"RECORD"', b'"type": "RECORD"')


def stream_name(object_name: str) -> str:
    """`accounts-receivable/customer` -> `accounts_receivable__customer` (ARCHITECTURE.md)."""
    return object_name.replace("/", "__").replace("-", "_")


def min_calls(n: int, per_call: int) -> int:
    """The fewest requests that can move ``n`` records ``per_call`` at a time (0 for n == 0)."""
    return math.ceil(n / per_call) if n else 0


def script(name: str) -> str:
    """Absolute path of a console script of this venv (never whatever is first on PATH)."""
    path = BIN / name
    if not path.exists():
        raise SystemExit(f"{path} not found: is the package installed in this venv?")
    return str(path)


# -- emulator ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback TCP port (tiny race with other users; the start-up probe catches it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (its threads included)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def proc_peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process in MiB, or NaN if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Emulator:
    """One emulator server in a subprocess on a private port, stopped on exit.

    Started through the ``intacct-emulator`` console script (the same entry point a user runs)
    with ``--db FILE`` when a pre-seeded database is given, so a million records need not go
    through the API. Control endpoints (`/_emulator/...`) give call counts.
    """

    def __init__(
        self,
        *,
        db: str | Path | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root_url + API_PREFIX
        self.db = str(db) if db is not None else None
        self._extra_args = list(extra_args)
        self._own_log = log_path is None
        self._log_path = log_path or Path(tempfile.gettempdir()) / f"bench-emulator-{self.port}.log"
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(timeout=120.0)

    @property
    def pid(self) -> int:
        """Process id of the server (for CPU and RSS sampling)."""
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Emulator:
        """Spawn the server and wait until its control endpoint answers."""
        cmd = [script("intacct-emulator"), "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--exit-with-parent", str(os.getpid())]
        if self.db:
            cmd += ["--db", self.db]
        cmd += self._extra_args
        log = self._log_path.open("wb")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        log.close()
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"emulator exited at start-up:\n{self.log_tail()}")
            try:
                if self._http.get(self.root_url + CONTROL_PREFIX + "/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"emulator did not answer within {self._startup_timeout}s")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s); drop our temporary log."""
        self._http.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._own_log:
            self._log_path.unlink(missing_ok=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server log, for error messages."""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def token(self) -> str:
        """Mint an access token with the client-credentials grant (demo client)."""
        resp = self._http.post(
            self.base_url + "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "username": USERNAME,
            },
        )
        resp.raise_for_status()
        token: str = resp.json()["access_token"]
        return token

    def stats(self) -> dict[str, Any]:
        """The emulator's request counters (`GET /_emulator/stats`)."""
        resp = self._http.get(self.root_url + CONTROL_PREFIX + "/stats")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def reset(self, **parts: bool) -> None:
        """`POST /_emulator/reset`; keyword `False` keeps a part (stats, faults, data, tokens,
        idempotency), e.g. ``reset(data=False, tokens=False)`` zeroes only counters and caches.
        """
        resp = self._http.post(self.root_url + CONTROL_PREFIX + "/reset", json=parts)
        resp.raise_for_status()

    def set_faults(self, **knobs: Any) -> None:
        """`POST /_emulator/faults` with the named knobs (the others keep their values), e.g.
        ``set_faults(latency_ms=250)``; ``set_faults(latency_ms=0)`` switches it off again.
        """
        resp = self._http.post(self.root_url + CONTROL_PREFIX + "/faults", json=knobs)
        resp.raise_for_status()

    @contextlib.contextmanager
    def latency(self, ms: float) -> Iterator[None]:
        """Every API request answered ``ms`` later while the block runs (nothing if 0)."""
        if not ms:
            yield
            return
        self.set_faults(latency_ms=ms)
        try:
            yield
        finally:
            self.set_faults(latency_ms=0)

    def reset_stats(self) -> None:
        """Zero the request counters only (call counts are taken as deltas anyway)."""
        self.reset(faults=False, data=False, tokens=False, idempotency=False)

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far."""
        return proc_cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        """Peak RSS of the server so far."""
        return proc_peak_rss_mb(self.pid)


def _numeric_leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Flatten nested stats into `a.b.c -> number` pairs (booleans and strings skipped)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from _numeric_leaves(value, f"{prefix}{key}.")
    elif isinstance(data, int | float) and not isinstance(data, bool):
        yield prefix.rstrip("."), float(data)


def stats_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Per-counter difference of two `/_emulator/stats` snapshots (non-zero entries only)."""
    old = dict(_numeric_leaves(before))
    delta = {}
    for key, value in _numeric_leaves(after):
        diff = value - old.get(key, 0.0)
        if diff:
            delta[key] = diff
    return delta


def count_calls(stats: Mapping[str, float], *, kind: str, object_name: str) -> int:
    """Requests of one kind in a `stats_delta` of the emulator's counters.

    The emulator counts every API call as `METHOD /path` with keys replaced by `{key}`
    (`intacct_emulator.stats`), flattened here to `requests.POST /services/core/query`.
    ``kind="query"`` counts query-service calls; ``kind="write"`` counts POST/PATCH/DELETE on
    the object's collection or keys (single or batch: each request counts once).
    """
    query_key = "requests.POST /services/core/query"
    collection = f"/objects/{object_name}"
    total = 0.0
    for name, value in stats.items():
        if kind == "query":
            hit = name == query_key
        else:
            method, _, path = name.removeprefix("requests.").partition(" ")
            hit = method in {"POST", "PATCH", "DELETE"} and (
                path == collection or path == collection + "/{key}"
            )
        if hit:
            total += value
    return int(total)


# -- seeding ----------------------------------------------------------------------------------


def seeded_db(object_name: str, n: int, *, random_seed: int = 7, fresh: bool = False) -> Path:
    """A SQLite file holding exactly ``n`` records of ``object_name``, built once and cached.

    Built with the emulator's own data layer (the same code that serves the rows) *before* the
    server starts, because creating a million records through the HTTP API would take longer
    than the benchmark itself. Cached under `benchmarks/results/cache/` by (object, n, seed).
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{object_name.replace('/', '__')}-{n}-s{random_seed}.sqlite"
    if path.exists() and not fresh:
        return path
    tmp = path.with_suffix(".tmp")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    from benchmarks._seed import seed_object

    seed_object(str(tmp), object_name, n, random_seed=random_seed)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    tmp.replace(path)
    print(f"seeded {n:,} {object_name} records in {time.perf_counter() - started:.1f}s -> {path}")
    return path


def working_copy(db: Path) -> Path:
    """A throw-away copy of a cached database, so a run can never alter the cache."""
    fd, name = tempfile.mkstemp(prefix="bench-", suffix=".sqlite")
    os.close(fd)
    shutil.copyfile(db, name)
    return Path(name)


# -- child processes --------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one measured child process did."""

    label: str
    returncode: int
    wall_s: float
    records: int
    peak_rss_mb: float
    user_s: float
    sys_s: float
    first_record_s: float | None = None
    stdout_bytes: int = 0
    emulator_cpu_s: float | None = None
    calls: int | None = None
    expected_calls: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    first_record_line: bytes | None = field(default=None, repr=False)

    @property
    def rate(self) -> float:
        """Records per second, wall clock from spawn to exit."""
        return self.records / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_rate(self) -> float | None:
        """Records per second after the first RECORD byte (start-up excluded)."""
        if self.first_record_s is None or self.wall_s <= self.first_record_s:
            return None
        return self.records / (self.wall_s - self.first_record_s)

    @property
    def cpu_s(self) -> float:
        """User + system CPU seconds of the child."""
        return self.user_s + self.sys_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form with the derived rates included."""
        data = asdict(self)
        data.pop("first_record_line", None)
        data.update(rate=self.rate, steady_rate=self.steady_rate, cpu_s=self.cpu_s)
        return data


def _first_record_line(window: bytes) -> bytes | None:
    """The first complete RECORD line of a chunk (kept to compare record shapes of two runs)."""
    for line in window.split(b"\n")[:-1]:
        if any(marker in line for marker in _RECORD_MARKERS):
            return line
    return None


class _PeakSampler(threading.Thread):
    """Polls a child's VmHWM until told to stop (see the module docstring for why)."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_mb = 0.0

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = proc_peak_rss_mb(self._pid)
            if not math.isnan(value) and value > self.peak_mb:
                self.peak_mb = value
            self._stop_event.wait(self._interval)

    def stop(self) -> float:
        """Stop sampling; the highest VmHWM seen, in MiB."""
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_mb


class _RecordCounter(threading.Thread):
    """Drains a pipe and counts Singer RECORD messages without parsing them."""

    def __init__(self, stream: Any, started: float) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._t0 = started
        self.records = 0
        self.nbytes = 0
        self.first_record_s: float | None = None
        self.first_record_line: bytes | None = None

    def run(self) -> None:
        # Per marker, keep its length - 1 bytes of the previous chunk: enough to catch a marker
        # split by a chunk boundary, too short to hold (and count twice) a whole one.
        tails = dict.fromkeys(_RECORD_MARKERS, b"")
        read = self._stream.read
        while True:
            chunk = read(1 << 20)
            if not chunk:
                break
            self.nbytes += len(chunk)
            found = 0
            for marker, tail in tails.items():
                window = tail + chunk
                found += window.count(marker)
                tails[marker] = window[-(len(marker) - 1) :]
            if found and self.first_record_s is None:
                self.first_record_s = time.perf_counter() - self._t0
                self.first_record_line = _first_record_line(chunk)
            self.records += found


def run_child(
    label: str,
    cmd: Sequence[str],
    *,
    stdin_path: Path | None = None,
    count_stdout: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600.0,
    emulator: Emulator | None = None,
) -> RunResult:
    """Run one command to completion and measure it (see the module docstring).

    ``count_stdout`` pipes stdout to the RECORD counter; otherwise stdout goes to /dev/null
    (the target writes only STATE lines). The child is killed after ``timeout`` seconds so a
    hung connector cannot keep a shared machine busy.
    """
    stdout: Any = subprocess.PIPE if count_stdout else subprocess.DEVNULL
    child_env = dict(os.environ)
    child_env.update(env or {})
    emu_cpu_before = emulator.cpu_seconds() if emulator else None
    with contextlib.ExitStack() as stack:
        stderr_file = stack.enter_context(tempfile.TemporaryFile())
        stdin: Any = (
            stack.enter_context(stdin_path.open("rb")) if stdin_path else subprocess.DEVNULL
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdin=stdin, stdout=stdout, stderr=stderr_file, env=child_env, cwd=REPO
        )
        counter = None
        if count_stdout:
            counter = _RecordCounter(proc.stdout, started)
            counter.start()
        sampler = _PeakSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        peak_mb = sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if counter is not None:
            counter.join(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        stderr_file.seek(0)
        err = stderr_file.read().decode(errors="replace")
    result = RunResult(
        label=label,
        returncode=proc.returncode,
        wall_s=wall,
        records=counter.records if counter else 0,
        peak_rss_mb=peak_mb,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        first_record_s=counter.first_record_s if counter else None,
        first_record_line=counter.first_record_line if counter else None,
        stdout_bytes=counter.nbytes if counter else 0,
        stderr_tail="\n".join(err.splitlines()[-25:]),
        extra={"ru_maxrss_mb": usage.ru_maxrss / 1024},
    )
    if emulator is not None and emu_cpu_before is not None:
        result.emulator_cpu_s = emulator.cpu_seconds() - emu_cpu_before
    if proc.returncode != 0:
        print(f"!! {label} exited with {proc.returncode}:\n{result.stderr_tail}", file=sys.stderr)
    return result


# -- output -----------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ",.0f") -> str:
    """Format numbers for the table; None/NaN/-1 become "n/a"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int) and value == -1:
        return "n/a"
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned text table (readable in CI logs and pasteable into the README)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in cells[1:]:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def machine_info() -> dict[str, Any]:
    """Context stored next to the figures: they only compare within one run and one machine."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, payload: Mapping[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` (git-ignored) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    data = {"benchmark": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nresults written to {path.relative_to(REPO)}")
    return path


def best(results: Sequence[RunResult]) -> RunResult:
    """The fastest successful run of repeated attempts (noise only ever slows a run down)."""
    ok = [r for r in results if r.returncode == 0] or list(results)
    return min(ok, key=lambda r: r.wall_s)


def child_env() -> dict[str, str]:
    """Environment for connector children: unbuffered-off, no user site, quiet warnings."""
    return {"PYTHONNOUSERSITE": "1", "PYTHONWARNINGS": "ignore"}


PROFILE_ENV = {**child_env(), "INTACCT_NORMAL_EXIT": "1"}
"""For a connector run under cProfile, which writes its file at interpreter exit (the console
scripts otherwise leave without finalizing: :mod:`intacct_api.process_exit`)."""
