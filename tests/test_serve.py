"""serve_model: the real batching server (actionlm.knowledge.batch_server) on the bundled
SmolLM2 answering the openai client, and no server left behind however the block ends (normally,
by an exception, by Ctrl-C, by a server that dies or never answers)."""

from __future__ import annotations

import json
import re
import socket
from urllib.parse import urlparse

import openai
import psutil
import pytest

from actionlm.errors import ActionlmError
from actionlm.knowledge.serve import serve_model, served_model_name

SERVER_MODULE = "actionlm.knowledge.batch_server"


def server_processes() -> list[psutil.Process]:
    """Live descendants of this test process that run the batching server."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and SERVER_MODULE in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def port_open(base_url: str) -> bool:
    url = urlparse(base_url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((url.hostname, url.port)) == 0


@pytest.fixture
def broken_model(tmp_path):
    """A folder that looks like a model (config.json) but has no weights: the server dies
    while loading it."""
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8}))
    return folder


@pytest.mark.slow
def test_openai_client_gets_text_from_smollm2_and_server_stops(smollm2_dir, tmp_path):
    log_path = tmp_path / "logs" / "serve.log"
    with serve_model(smollm2_dir, log_path=log_path, threads=1) as base_url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        running = server_processes()
        assert running and port_open(base_url)
        assert running[0].environ()["OMP_NUM_THREADS"] == "1"
        assert running[0].cmdline()[-2:] == ["--threads", "1"]  # torch.set_num_threads too
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        models = client.models.list()
        assert [m.id for m in models.data] == [served_model_name(smollm2_dir)]
        reply = client.chat.completions.create(
            model=served_model_name(smollm2_dir), max_tokens=12, temperature=0,
            messages=[{"role": "user", "content": "Name one body part used to wave."}],
        )
        assert reply.choices[0].message.content.strip()
        assert 0 < reply.usage.completion_tokens <= 12
    assert not port_open(base_url)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running)
    assert server_processes() == []
    assert "batch rows=1 " in log_path.read_text()  # the server's line for the batch


@pytest.mark.slow
def test_server_is_stopped_when_the_body_is_interrupted(smollm2_dir):
    with pytest.raises(KeyboardInterrupt):  # not an Exception: only a `finally` stops it
        with serve_model(smollm2_dir, threads=1) as base_url:
            assert port_open(base_url)
            raise KeyboardInterrupt
    assert not port_open(base_url)
    assert server_processes() == []


def test_server_that_dies_during_startup_is_reported_with_its_log(broken_model, tmp_path):
    log_path = tmp_path / "serve.log"
    with pytest.raises(ActionlmError, match=r"exited with code \d+ before answering") as err:
        with serve_model(broken_model, log_path=log_path):
            pytest.fail("the body must not run")
    server_error = log_path.read_text().strip().splitlines()[-1]  # the exception it died of
    assert server_error in str(err.value)
    assert server_processes() == []


def test_server_that_never_answers_is_killed_at_the_timeout(broken_model):
    with pytest.raises(ActionlmError, match="did not answer .* within 0.5 s"):
        with serve_model(broken_model, startup_timeout=0.5):
            pytest.fail("the body must not run")
    assert server_processes() == []


def test_folder_name_the_server_would_misparse_is_refused(tmp_path):
    folder = tmp_path / "model@v2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ActionlmError, match="cannot be served"):
        with serve_model(folder):
            pass
    assert served_model_name(tmp_path / "smollm2-135m-instruct") == "smollm2-135m-instruct"
