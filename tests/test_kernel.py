"""The kernel as a real process on the bundled model: the OpenAI API, consoles, crashes."""
import json
import shutil
import threading
import time

import pytest
from conftest import batos_env, run_batos
from kernel_proc import KernelProcess

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def image_with_models(tmp_path_factory, model_store, smol_master):
    tmp = tmp_path_factory.mktemp("kernel")
    env = batos_env(tmp, BATOS_IMAGE=str(tmp / "image"), BATOS_MODELS=str(model_store))
    run_batos("init", env=env, check=True, timeout=600)
    shutil.copytree(tmp / "image", tmp / "pristine")    # for the crash test: no mission yet
    return tmp, env


@pytest.fixture(scope="module")
def kernel(image_with_models):
    _, env = image_with_models
    k = KernelProcess(env, "--heartbeat", "0")
    yield k
    assert k.terminate() == 0
    assert '"event": "stopped"' in k.log()


def test_openai_client_chat_streaming_embeddings_and_401(kernel):
    import openai
    client = kernel.client()
    assert sorted(m.id for m in client.models.list()) == ["hermes", "orai"]
    for mind in ("hermes", "orai"):
        r = client.chat.completions.create(
            model=mind, messages=[{"role": "user", "content": QUESTION}], max_tokens=24,
            extra_body={"batos": {"embedding": True}})
        answer = r.choices[0].message.content
        assert "Paris" in answer, answer
        assert r.usage.completion_tokens > 0 and r.choices[0].finish_reason in ("stop", "length")
        ext = r.model_extra["batos"]
        assert ext["speaker"] == mind and len(ext["embedding"]) == 384 and ext["exchange"]
        pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
            model=mind, messages=[{"role": "user", "content": QUESTION}], max_tokens=24,
            stream=True) if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 3 and "".join(pieces) == answer      # greedy: the same answer
    e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a dog"])
    assert len(e.data) == 2 and len(e.data[1].embedding) == 384
    with pytest.raises(openai.AuthenticationError):
        kernel.client(token="batos-wrong").models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    # every exchange landed in the speaking mind's ledger
    out = json.loads(run_batos("missions", "--json", "--image", "zeo://" + kernel.zeo,
                               check=True).stdout)
    assert all(m["state"] == "COMPLETE" for m in out) and len(out) == 4


def test_a_second_kernel_refuses(kernel, image_with_models):
    _, env = image_with_models
    p = run_batos("kernel", "--http", "127.0.0.1:0", env=env, timeout=60)
    assert p.returncode == 2 and "already serves" in p.stderr and "--attach" in p.stderr


def test_two_consoles_and_the_kernel_see_each_others_commits(kernel):
    from batos.console import Console
    from image import open_image
    a_img, b_img = open_image("zeo://" + kernel.zeo), open_image("zeo://" + kernel.zeo)
    a, b = Console(a_img), Console(b_img)
    try:
        a.execute("root['note'] = 'from A'")
        assert b.execute("root['note']") == "from A"
        b.execute("root['note'] = 'from B'")
        assert a.execute("root['note']") == "from B"
        result = b.execute(f":send hermes {QUESTION}")        # queued by B, run by the kernel
        assert result["state"] == "COMPLETE" and "Paris" in result["answer"]
        rows = a.execute(":missions 1")                       # A sees the kernel's commit
        assert rows[-1]["id"] == result["id"] and rows[-1]["state"] == "COMPLETE"
        assert b.execute(":rate 1 good exactly right") is True
        mind, key = result["exchanges"][-1]
        assert a.execute(f"root['{mind}'].ledger['{key}'].signals['rating']") == "good"
    finally:
        a.close()
        b.close()
        a_img.close()
        b_img.close()


def test_an_attached_console_has_the_kernel_write_a_missing_method(kernel):
    """Mission mode on the bundled model: a verified method, or a clear failure and no change."""
    import io

    from rich.console import Console as RichConsole

    from batos.console import Console
    from image import open_image
    img = open_image("zeo://" + kernel.zeo)
    text = io.StringIO()
    con = Console(img, out=RichConsole(file=text, width=200))
    try:
        con.execute("root['calc'] = UvmObject(**{'name': 'calc', 'parent*': traits, 'base': 10})")
        con.execute("extension.max_tokens = 160")
        result = con.execute("root['calc'].double(21)")
        shown = text.getvalue()
        mid = shown.split("mission ")[1].split()[0]
        assert "asks the kernel to write it" in shown
        state = con.execute(f"root['missions']['{mid}'].state")
        method = con.execute("root['calc'].lookup('double', None)")
        if result == 42:
            assert state == "COMPLETE" and method.provenance["mission"] == mid
            assert con.execute("root['calc'].double(5)") == 10
        else:
            assert result is None and "ExtensionFailed" in text.getvalue(), text.getvalue()
            assert state == "FAILED" and method is None
            assert con.execute("sorted(root['calc'].slot_names())") == ["base", "name", "parent*"]
    finally:
        con.close()
        img.close()


def test_a_segfaulting_method_fails_its_mission_and_the_kernel_keeps_serving(kernel):
    """The method runs in a worker: the worker dies, the kernel does not."""
    from image import open_image
    from kernel.extend import submit, wait
    from prototypes import ExtensionFailed, UvmObject
    from prototypes.method import install
    crash = ("def crash(self):\n    self.n = 2\n    t = ()\n    for i in range(300000):\n"
             "        t = (t,)\n    return hash(t)\n")
    img = open_image("zeo://" + kernel.zeo)
    try:
        with img.transaction() as conn:
            root = conn.root()
            root["crasher"] = obj = UvmObject(**{"name": "crasher", "parent*": root["traits"],
                                                 "n": 1})
            install(obj, "crash", crash, {"author": "mind", "mind": "hermes"})
            install(obj, "ok", "def ok(self):\n    return self.n + 1\n", {"author": "mind"})
        with img.view() as root:
            target = root["crasher"]
            mid = submit(img, target, "crash")
            with pytest.raises(ExtensionFailed, match="segmentation fault") as e:
                wait(img, mid, timeout=120)
            assert "crashed the worker" in str(e.value)
            assert sorted(m.id for m in kernel.client().models.list()) == ["hermes", "orai"]
            assert wait(img, submit(img, target, "ok"), timeout=120) == 2    # n is still 1
        with img.transaction() as conn:      # attached over ZEO: the call isolates here too
            assert conn.root()["crasher"].ok() == 2
        assert kernel.proc.poll() is None
    finally:
        img.close()


def test_sigkill_mid_mission_then_restart(image_with_models):
    from image import open_image
    from kernel.missions import queued
    tmp, env = image_with_models
    crash = tmp / "crash"
    shutil.copytree(tmp / "pristine", crash)
    env = env | {"BATOS_IMAGE": str(crash)}
    k = KernelProcess(env, "--heartbeat", "0")
    client = k.client()
    threading.Thread(target=lambda: _quietly(client, 200), daemon=True).start()
    deadline = time.monotonic() + 120
    while '"state": "DELEGATING"' not in k.log():            # generating now
        assert time.monotonic() < deadline, k.log()
        time.sleep(0.1)
    time.sleep(1.0)
    k.kill()
    with open_image(crash) as img, img.view() as root:       # opens; nothing half-written
        (mid,) = queued(root)
        m = root["missions"][mid]
        assert m.state == "IDLE" and m.attempts == 1 and m.answer is None and m.exchanges == []
        assert len(root["hermes"].ledger) == 0 and len(root["orai"].ledger) == 0
    k = KernelProcess(env, "--heartbeat", "1", "--grace", "0.5")   # runs it again
    _wait_for(k, f'"event": "mission_done", "mission": "{mid}"')
    assert '"event": "requeue"' in k.log()
    # SIGTERM while another mission generates: after the grace period it is
    # abandoned (its transaction aborts) and stays queued; the kernel exits 0
    start = len(k.log())
    threading.Thread(target=lambda: _quietly(k.client(), 200), daemon=True).start()
    _wait_for(k, '"state": "DELEGATING", "kind": "chat"', start)
    assert k.terminate() == 0
    assert '"reason": "stopping"' in k.log()
    with open_image(crash) as img, img.view() as root:
        m = root["missions"][mid]
        assert m.state == "COMPLETE" and m.attempts == 2
        (mind, key), = m.exchanges
        assert m.speaker == mind == "hermes" and list(root[mind].ledger) == [key]
        (left,) = [q for q in queued(root) if root["missions"][q].kind == "chat"]
        # the abandoned one, intact
        assert root["missions"][left].state == "IDLE" and root["missions"][left].exchanges == []
        assert len(root["audits"]) >= 1                      # the heartbeat's self-audit
        assert "kernel" not in root["meta"]                  # unpublished on the way out


def _wait_for(k, text, start=0, timeout=180):
    """Wait until ``text`` shows in the kernel's log after offset ``start``."""
    deadline = time.monotonic() + timeout
    while text not in k.log()[start:]:
        assert time.monotonic() < deadline, k.log()[-3000:]
        time.sleep(0.1)


def test_api_rejects_bad_requests_clearly(kernel):
    import http.client
    from urllib.parse import urlparse
    u = urlparse(kernel.url)

    def post(path, body, token=kernel.token):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("POST", path, body=body, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json"})
        r = c.getresponse()
        out = r.status, json.loads(r.read())
        c.close()
        return out
    status, body = post("/v1/chat/completions", "{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    status, body = post("/v1/chat/completions", json.dumps(
        {"model": "hermes", "messages": [{"role": "assistant", "content": "hi"}]}))
    assert status == 400 and "end with a user message" in body["error"]["message"]
    status, body = post("/v1/embeddings", json.dumps({"input": [[1, 2, 3]]}))
    assert status == 400 and "token arrays" in body["error"]["message"]
    status, body = post("/v1/models", "{}", token="")
    assert status == 401 and "batos api-token" in body["error"]["message"]


def _quietly(client, max_tokens):
    import openai
    try:
        client.chat.completions.create(model="hermes", max_tokens=max_tokens, messages=[
            {"role": "user", "content": "Tell me everything about the history of Paris."}])
    except (openai.APIConnectionError, openai.InternalServerError):
        pass                            # the kernel is killed (or stopped) under it
