"""A local OpenAI-compatible server for a prepared LLM folder (our batching server,
actionlm.knowledge.batch_server), so that the describe stage talks to the bundled model through
the same openai client it uses for a paid API. The server lives exactly as long as a
``with serve_model(...)`` block.

The server runs in its own process group on a loopback port; leaving the block, by success, by
an exception or by Ctrl-C, stops the whole group (SIGTERM, then SIGKILL after a grace period),
so no server outlives the stage.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from actionlm.data.prepare_llm import llm_model_dir
from actionlm.errors import ActionlmError

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
POLL_S = 0.25
LOG_TAIL_LINES = 15
# The served name is a URL path segment (/v1/models/NAME) and a cache key part: plain characters
# only (this also keeps the rule of `transformers serve`, which read `<id>[@revision][:file]`).
SERVABLE_NAME = re.compile(r"^[A-Za-z0-9_][\w.-]*$")


def served_model_name(model_dir: str | os.PathLike) -> str:
    """The ``model`` that requests to ``serve_model(model_dir)`` must name: the prepared
    folder's own name, stable across machines (unlike its path), so request caches keyed on it
    stay valid when the folder moves."""
    name = Path(model_dir).resolve().name
    if not SERVABLE_NAME.match(name):
        raise ActionlmError(
            f"{model_dir}: folder name {name!r} cannot be served (use letters, digits, . _ -)"
        )
    return name


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_model(
    model_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    host: str = "127.0.0.1",
    port: int | None = None,
    startup_timeout: float = 120,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Iterator[str]:
    """Run ``python -m actionlm.knowledge.batch_server`` on the model of ``model_dir`` and yield
    its OpenAI base URL (``http://127.0.0.1:PORT/v1``); requests name the model
    ``served_model_name(model_dir)``, and concurrent ones are answered in batches.
    ``device`` is the server's ("cpu", "cuda:0", "auto"); ``threads`` caps its CPU threads
    (give the rule's thread count: an oversubscribed torch is several times slower).
    Server output (one line per batch) goes to ``log_path`` (appended) or to a temporary file
    quoted in errors."""
    served_model_name(model_dir)  # refuse a bad folder name before starting anything
    folder = llm_model_dir(model_dir)
    port = port or free_port(host)
    url_host = f"[{host}]" if ":" in host else host
    root = f"http://{url_host}:{port}"
    with tempfile.TemporaryDirectory(prefix="actionlm-serve-") as scratch:
        log_file = Path(log_path) if log_path else Path(scratch) / "server.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",  # the model is local: nothing is ever downloaded
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "actionlm.knowledge.batch_server",
                   str(Path(model_dir).resolve()), "--host", host, "--port", str(port),
                   "--device", device]
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
            command += ["--threads", str(threads)]
        log.info("starting the model server on %s (log: %s)", folder, log_file)
        started = time.monotonic()
        with open(log_file, "ab") as log_stream:
            server = subprocess.Popen(
                command, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=log_stream,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_until_ready(server, root, startup_timeout, log_file)
            elapsed = time.monotonic() - started
            log.info("model %r served at %s/v1 after %.1f s", served_model_name(model_dir),
                     root, elapsed)
            yield f"{root}/v1"
        finally:
            stop_process_group(server)


def wait_until_ready(
    server: subprocess.Popen, root: str, timeout: float, log_file: Path
) -> None:
    """Poll /health until it answers; it only does once the model is loaded (the server loads
    the model before it starts listening)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise ActionlmError(
                f"the model server exited with code {server.returncode} before answering at "
                f"{root}; {log_tail(log_file)}"
            )
        try:
            with urllib.request.urlopen(f"{root}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ActionlmError(
                f"the model server did not answer at {root} within {timeout:g} s; "
                f"{log_tail(log_file)}"
            )
        time.sleep(POLL_S)


def stop_process_group(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process's whole group (it leads its own session), then SIGKILL whatever is
    left of it after ``grace`` seconds (the leader if it hung, any child it left), and reap."""
    signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("server %d ignored SIGTERM for %g s; killing it", process.pid, grace)
    signal_group(process.pid, signal.SIGKILL)
    process.wait()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def log_tail(log_file: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The end of the server's output, for an error message (a temporary log is gone after)."""
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return f"last lines of its output ({log_file}):\n" + ("\n".join(tail) or "(none)")
