"""actionlm.io's atomic writes: a temp file that a killed writer left beside its target is
removed by the next write in that folder; a live writer's and another host's are not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from actionlm.io import owned_prefix, write_json


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    code = ("import sys, time; from actionlm.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_text('half'); print(tmp, flush=True); time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a.json")],
                              stdout=subprocess.PIPE, text=True)
    left = tmp_path / writer.stdout.readline().strip()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert left.is_file() and not (tmp_path / "a.json").exists()  # what a kill leaves
    host = socket.gethostname()
    live = tmp_path / f"{owned_prefix('b.json', 'tmp')}x.tmp"
    elsewhere = tmp_path / f".c.json.tmp-other-{host}-{writer.pid}-y.tmp"
    for path in (live, elsewhere):
        path.write_text("in use")
    write_json({"ok": True}, tmp_path / "d.json")
    assert not left.exists()
    assert live.exists() and elsewhere.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, elsewhere.name, "d.json"])

