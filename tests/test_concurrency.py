"""Shared models under several threads: the embedder, the model pool, a kernel with workers."""
import concurrent.futures
import threading
import time

import pytest

from kernel.missions import new_mission
from kernel.psm import Services, run_mission
from mindhost import minds
from mindhost.pool import ModelPool


class Overlap:
    """Wraps a callable and records the most calls that were inside it at once."""

    def __init__(self, fn, hold=0.02):
        self.fn, self.hold, self.inside, self.most, self.calls = fn, hold, 0, 0, 0
        self.lock = threading.Lock()

    def __call__(self, *a, **kw):
        with self.lock:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(self.hold)           # widen the window a second caller could enter
            return self.fn(*a, **kw)
        finally:
            with self.lock:
                self.inside -= 1


def test_the_embedder_serialises_its_callers_and_gives_the_serial_answers():
    """Workers, the HTTP API and memory searches share one embedder; whatever the threads
    do (encode, tokenize, token states), the model sees one call at a time."""
    import numpy as np

    from memory.embed import Embedder, model_path
    emb = Embedder(model_path())
    texts = [f"sentence number {i} about rivers and mountains" for i in range(12)]
    serial = emb.encode(texts)
    model = emb.model
    watch = Overlap(model.encode)
    model.encode = watch
    tok = model.tokenizer
    tok_watch = Overlap(tok.__call__)
    # __call__ is looked up on the type: the tokenizer becomes an instance of a subclass
    # whose calls, encode's own tokenizing among them, all go through the watch
    tok.__class__ = type("Watched", (type(tok),), {"__call__": lambda self, *a, **kw:
                                                   tok_watch(*a, **kw)})
    ids = model.tokenizer(["a river"], add_special_tokens=False)["input_ids"]

    def work(i):
        if i % 3 == 0:
            return ("tokens", emb.tokenize([texts[i]], add_special_tokens=False)["input_ids"])
        if i % 3 == 1:
            return ("states", emb.token_states(ids)[0].shape)
        return ("vector", emb.encode([texts[i]])[0])
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        out = list(pool.map(work, range(12)))
    assert watch.most == 1, f"{watch.most} encodes ran at once"
    for i, (kind, value) in enumerate(out):
        if kind == "vector":
            assert np.allclose(value, serial[i], atol=1e-5)
    assert tok_watch.calls >= 9 and tok_watch.most == 1    # installed (encode too), one at a time


def test_a_model_is_never_unloaded_between_loading_and_use(folder_image, tiny_llama, tmp_path,
                                                           tiny_st_model):
    """Model work hops to the main thread; anything else queued there (the night's
    unload_all, a runtime change) runs between two hops. The model a cycle uses must be
    the one it loaded in the same hop."""
    from memory.embed import Embedder
    img = folder_image
    minds.install(img, "hermes", tiny_llama, engine="torch", precision="fp16",
                  store_dir=tmp_path / "models")
    pool = ModelPool()
    hops = []

    def main_thread(fn):          # before every hop, the night frees the day's models
        hops.append(pool.loaded_names())
        pool.unload_all()
        return fn()
    svc = Services(pool, Embedder(tiny_st_model), infer=main_thread)
    with img.transaction() as conn:
        conn.root()["hermes"].routing["mode"] = "off"
        mid = new_mission(conn.root(), "hermes", "Say hello.", options={"max_tokens": 3}).id
    out = run_mission(img, mid, svc)
    assert out["state"] == "COMPLETE" and len(hops) == 2      # generate, then embed


@pytest.fixture
def kernel_with_memory(tmp_path, tiny_llama):
    """A real kernel process with 3 workers; both minds on the tiny Llama; Hermes mounts a
    small corpus, so chats search memory too."""
    from conftest import batos_env, run_batos
    from kernel_proc import KernelProcess

    from image import open_image
    from kernel.schema import bootstrap
    loc = tmp_path / "image"
    with open_image(loc, create=True) as img:
        bootstrap(img)
        for mind in minds.MINDS:
            minds.install(img, mind, tiny_llama, engine="torch", precision="fp16",
                          store_dir=loc / "models")
        with img.transaction() as conn:
            for mind in minds.MINDS:
                conn.root()[mind].engine["max_tokens"] = 4
            conn.root()["hermes"].routing["mode"] = "off"
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, topic in enumerate(["rivers", "mountains", "deserts", "forests"]):
        (docs / f"{topic}.md").write_text(
            f"# {topic.title()}\n\n" + " ".join(
                f"Fact {j} about {topic}: they cover {i * 10 + j} percent of some land."
                for j in range(20)))
    env = batos_env(tmp_path, BATOS_IMAGE=str(loc))
    run_batos("memory", "ingest", "notes", docs, env=env, check=True, timeout=300)
    run_batos("memory", "mount", "notes", "--mind", "hermes", env=env, check=True)
    k = KernelProcess(env, "--threads", "3", "--heartbeat", "0", "--dream-at", "off")
    yield k
    k.terminate()


def test_concurrent_chats_searches_and_embeddings_on_a_real_kernel(kernel_with_memory):
    k = kernel_with_memory
    client = k.client()

    def chat(i):
        mind = "hermes" if i % 2 else "orai"
        r = client.chat.completions.create(
            model=mind, messages=[{"role": "user", "content": f"Tell me about rivers {i}."}])
        return ("chat", r.choices[0].message.content)

    def embed(i):
        r = client.embeddings.create(model="hermes", input=[f"mountains {i}", "deserts"])
        return ("embed", len(r.data[0].embedding))
    jobs = [chat if i % 3 else embed for i in range(12)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        out = list(pool.map(lambda ij: ij[1](ij[0]), enumerate(jobs)))
    assert [kind for kind, _ in out] == ["embed" if i % 3 == 0 else "chat" for i in range(12)]
    assert all(dim == 384 for kind, dim in out if kind == "embed")
    assert all(isinstance(text, str) for kind, text in out if kind == "chat")
    log = k.log()
    assert '"mission_error"' not in log and '"event": "abort"' not in log
    with_memory = [line for line in log.splitlines() if '"commit"' in line]
    assert len(with_memory) == 8
