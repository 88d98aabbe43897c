"""`torchrig serve` for a tiny trained causal LM, through the real `openai` client (and
httpx for what a client should not be able to send): completions and chat, streamed and
not, the same text as `generate`, auth, limits, errors as JSON, metrics, graceful stop."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.serve.conftest import TOKEN, Server
from torchrig.serve import generate, kinds, lm
from torchrig.serve.sampling import Sampling


@pytest.fixture(scope="module")
def client(lm_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=lm_server.url + "/v1", api_key=TOKEN, max_retries=0)


def test_completions_match_generate(lm_run: Path, client: openai.OpenAI) -> None:
    model = lm.load(kinds.find(lm_run).path, "cpu")
    ids = list(model.tokenizer("The quick")["input_ids"])
    expected = generate.complete(model, generate.Request(ids, 20, Sampling(0.0))).text
    answer = client.completions.create(
        model="run", prompt="The quick", max_tokens=20, temperature=0
    )
    assert answer.choices[0].text == expected and answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 20
    streamed = client.completions.create(
        model="run", prompt="The quick", max_tokens=20, temperature=0, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length" and len(chunks) > 5


def test_chat_streamed_and_not_with_a_stop(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "The quick"}]
    whole = client.chat.completions.create(
        model="run",
        messages=messages,
        max_tokens=30,
        temperature=0,
        stop=["dog"],  # type: ignore[arg-type]
    )
    text = whole.choices[0].message.content
    assert text is not None and "lazy" in text and "dog" not in text
    assert whole.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model="run", messages=messages, max_tokens=30, temperature=0, stop=["dog"],  # type: ignore[arg-type]
        stream=True,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_limits_and_bad_requests_are_json_4xx(lm_server: Server, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="over this server's limit of 48"):
        client.completions.create(model="run", prompt="The", max_tokens=1000)
    with pytest.raises(openai.BadRequestError, match="context is 64 tokens") as too_long:
        client.completions.create(model="run", prompt="fox " * 100, max_tokens=4)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=lm_server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    h = {**lm_server.headers, "Content-Type": "application/json"}
    url = lm_server.url
    broken = b"{not json"
    cases = [
        (httpx.post(url + "/v1/completions", headers=h, content=broken), 400, "not valid JSON"),
        (httpx.post(url + "/v1/completions", headers=h, json={}), 400, "no 'prompt' field"),
        (httpx.post(url + "/v1/completions", headers=h, json={"prompt": "a", "n": 2}), 400, "n:"),
        (httpx.post(url + "/v1/predict", headers=h, json={"inputs": ["a"]}), 404, "causal LM"),
        (httpx.get(url + "/v1/nothing", headers=h), 404, "Not Found"),
        (httpx.post(url + "/v1/completions", json={"prompt": "a"}), 401, "bearer token"),
        (
            httpx.post(url + "/v1/completions", headers=h, content=b"x" * (100 << 20), timeout=60),
            413, "larger than this server's limit",
        ),
    ]  # fmt: skip
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"], response.text
        assert "Traceback" not in response.text
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}  # still up


def test_metrics_count_requests_and_tokens(lm_server: Server, client: openai.OpenAI) -> None:
    client.completions.create(model="run", prompt="A", max_tokens=5, temperature=0)
    assert httpx.get(lm_server.url + "/metrics").status_code == 401  # behind the token
    text = httpx.get(lm_server.url + "/metrics", headers=lm_server.headers).text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['torchrig_requests_total{code="200",endpoint="/v1/completions"}'] >= 1
    assert values["torchrig_generated_tokens_total"] >= 5
    assert values["torchrig_model_ready"] == 1.0
    assert "torchrig_request_seconds_bucket" in text and "torchrig_gpu_memory" in text


def test_sigterm_lets_a_stream_in_flight_finish(lm_run: Path, tmp_path: Path) -> None:
    server = Server(lm_run, "--overflow", "slide", tmp=tmp_path)
    pieces: list[str] = []
    started = threading.Event()

    def read() -> None:
        body = {"prompt": "The", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.stream(
            "POST", server.url + "/v1/completions", json=body, headers=server.headers, timeout=60
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    pieces.append(line[6:])
                    started.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(60)
    server.proc.send_signal(signal.SIGTERM)
    reader.join(60)
    assert server.proc.wait(60) == 0
    assert pieces[-1] == "[DONE]"
    last = json.loads(pieces[-2])
    assert (
        last["choices"][0]["finish_reason"] == "length"
        and last["usage"]["completion_tokens"] == 200
    )
