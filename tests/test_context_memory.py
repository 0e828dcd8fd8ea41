"""What a mind remembers across conversations, with real models: recall of its past, its
notebook, the running summary of a long conversation, and ``batos context`` showing exactly
what the PSM sends (tiny random Llama here; the bundled SmolLM2 in the last tests)."""
import json

import pytest
from conftest import batos_env, run_batos

from kernel.context import show
from kernel.missions import new_mission
from kernel.psm import Services, run_mission
from memory import notebook
from memory.embed import get_embedder
from mindhost.pool import ModelPool


class Watched:
    """A loaded model that records the messages of every generation (and its summaries)."""

    def __init__(self, model):
        self.model, self.sent, self.summaries = model, [], 0

    def stream(self, messages, **kw):
        self.sent.append(messages)
        return self.model.stream(messages, **kw)

    def generate(self, messages, **kw):
        self.summaries += 1
        return self.model.generate(messages, **kw)

    def __getattr__(self, name):
        return getattr(self.model, name)


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    from mindhost.engines import get_engine
    model = get_engine("torch").load(tiny_llama)
    yield model
    model.unload()


@pytest.fixture
def setup(folder_image, tiny):
    watched = Watched(tiny)
    pool = ModelPool({"hermes": watched, "orai": watched})
    svc = Services(pool, get_embedder())

    def ask(request, history=(), mind="hermes"):
        with folder_image.transaction() as conn:
            mid = new_mission(conn.root(), mind, request, history=history,
                              options={"max_tokens": 8}).id
        out = run_mission(folder_image, mid, svc)
        with folder_image.view() as root:
            (_, key), = [e for e in root["missions"][mid].exchanges]
            return out, key, dict(root[mind].ledger[key].signals)
    return folder_image, watched, pool, ask


def set_recall(img, **values):
    img.run(lambda root: root["hermes"].set_slot("recall", values))


def test_a_fact_told_in_one_conversation_is_in_the_next_ones_context(setup):
    img, watched, _, ask = setup
    _, told, _ = ask("My cat is called Pixel and she is grey.")
    ask("What is the weather like on Mars?")
    _, _, signals = ask("What is my cat called?")
    assert told in signals["context"]["recall"]
    system = watched.sent[-1][0]["content"]
    assert "From earlier conversations:" in system and "My cat is called Pixel" in system
    assert watched.sent[-1][-1] == {"role": "user", "content": "What is my cat called?"}
    assert len(watched.sent[-1]) == 2          # a new conversation: no window turns


def test_recall_holds_its_token_share_and_never_repeats_the_window(setup):
    img, watched, pool, ask = setup
    for i in range(12):
        ask(f"Fact {i}: the locker number {i} holds the spare keys to the garage.")
    set_recall(img, recall_tokens=120)
    history = [{"role": "user", "content": "Fact 11: the locker number 11 holds the spare keys "
                                           "to the garage."},
               {"role": "assistant", "content": "Noted."}]
    with img.view() as root:
        asm, g = show(img, root, "hermes", "Which locker holds the spare keys?", pool=pool,
                      history=history)
    recalled = [p for p in asm.parts if p["kind"] == "recall"]
    assert 0 < len(recalled) < 12 and len(g.recalled) >= 12
    system = asm.messages[0]["content"]
    block = system.split("From earlier conversations:\n")[1]
    bare = [{"role": "system", "content": system.split("\n\nFrom earlier")[0]}] + asm.messages[1:]
    size = lambda m: watched.count_tokens(watched.chat_template(m))   # noqa: E731
    assert size(asm.messages) - size(bare) <= 120      # the whole block, heading included
    assert "Fact 11:" not in block            # it is in the window already
    assert asm.messages[1] == history[0]


def test_the_notebook_keeps_what_it_is_asked_and_the_owners_edit_wins(setup):
    from batos.context_cmd import edit_notebook
    img, watched, _, ask = setup
    _, key, _ = ask("Please remember that I hate the colour blue.")
    with img.view() as root:
        nb = notebook.get(root, "hermes")
        assert nb.text == "- I hate the colour blue" and nb.version == 1
        assert nb.versions[1]["exchange"] == key and nb.versions[1]["by"] == "mind"
    from night.curate import curate
    with img.view() as root:
        row, = [r for r in curate(root, "hermes", since="").rows if r.key == key]
        assert "the owner asked to remember it (notebook)" in row.reasons
    ask("Which colour should the new logo be?")
    assert "Your notebook" in watched.sent[-1][0]["content"]
    assert "- I hate the colour blue" in watched.sent[-1][0]["content"]
    count = watched.count_tokens
    assert edit_notebook(img, "hermes", "- The owner is called Ada.", count) == 2
    ask("Remember that the build runs on Fridays.")
    with img.view() as root:
        nb = notebook.get(root, "hermes")
        assert nb.text == "- The owner is called Ada.\n- The build runs on Fridays"
        assert [v["by"] for v in nb.history()] == ["mind", "owner", "mind"]
        with pytest.raises(notebook.NotebookFull, match="changed"):
            notebook.write(root, "hermes", "- stale rewrite", by="mind", tokens=3, cap=256,
                           based_on=1)


def test_a_notebook_over_its_cap_is_refused_never_cut(setup):
    from batos.context_cmd import edit_notebook
    img, watched, _, ask = setup
    set_recall(img, notebook_tokens=24)
    long = "- " + "the owner likes very long and detailed notes about everything " * 3
    with pytest.raises(notebook.NotebookFull, match=r"over its cap of 24"):
        edit_notebook(img, "hermes", long, watched.count_tokens)
    edit_notebook(img, "hermes", "- Short fact.", watched.count_tokens)
    ask("Remember that " + "the garden gate must always stay closed at night " * 3)
    with img.view() as root:
        nb = notebook.get(root, "hermes")
        assert nb.text == "- Short fact." and nb.version == 1
        assert "over its cap" in nb.refused[-1]["why"] and "garden gate" in nb.refused[-1]["note"]


def test_turns_leaving_the_window_are_summarised_once_per_fold(setup):
    img, watched, pool, _ = setup
    img.run(lambda root: root["hermes"].engine.update(context_tokens=400, max_tokens=8))
    set_recall(img, recall_tokens=0, summary_tokens=24, fold=4)
    history = []
    for i in range(12):
        history += [{"role": "user", "content": f"Step {i}: we discussed the bridge design, "
                                                f"pillar {i} and its concrete mix in detail."},
                    {"role": "assistant", "content": f"Pillar {i} noted with its mix."}]
    made = {}
    from kernel.context import prepare, store_summaries
    with img.view() as root:
        asm, _ = prepare(img, root, "hermes", "What did we decide?", model=watched,
                         identity="You are Hermes.", budget=392, history=history, made=made)
    assert asm.summarized and asm.summarized % 4 == 0 and asm.tokens <= 392
    assert asm.turns_used + asm.turns_dropped == 12 and asm.turns_dropped == asm.summarized
    assert "Earlier in this conversation (summary):" in asm.messages[0]["content"]
    assert "not shown" not in asm.messages[0]["content"]
    assert watched.summaries == asm.summarized // 4          # one generation per fold
    img.run(lambda root: store_summaries(root, "hermes", made))
    longer = history + [{"role": "user", "content": "And pillar 12?"},
                        {"role": "assistant", "content": "Also noted."}]
    before = watched.summaries
    with img.view() as root:
        again, _ = prepare(img, root, "hermes", "What did we decide?", model=watched,
                           identity="You are Hermes.", budget=392, history=longer, made={})
    # the stored folds are reused: at most one new fold is summarised
    assert watched.summaries - before <= 1 and again.summarized >= asm.summarized


def test_batos_context_shows_what_the_psm_sends(setup):
    img, watched, pool, ask = setup
    ask("My sister lives in Lisbon.")
    ask("Remember that the owner's birthday is on 3 March.")
    request = "Where does my sister live?"
    with img.view() as root:
        asm, _ = show(img, root, "hermes", request, pool=pool)
    ask(request)
    assert watched.sent[-1] == asm.messages


# -- the bundled model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled(tmp_path_factory, model_store, smol_master):
    tmp = tmp_path_factory.mktemp("context-bundled")
    env = batos_env(tmp, BATOS_IMAGE=str(tmp / "image"), BATOS_MODELS=str(model_store))
    run_batos("init", env=env, check=True, timeout=600)
    return tmp / "image", env


def test_bundled_remembers_across_conversations_and_the_cli_shows_it(bundled, monkeypatch):
    from image import open_image
    path, env = bundled
    sent = []
    lease = ModelPool.lease

    def watched_lease(self, desc):
        cm = lease(self, desc)

        class Wrap:
            def __enter__(self_):
                model = cm.__enter__()
                w = Watched(model)
                w.sent = sent
                return w

            def __exit__(self_, *exc):
                return cm.__exit__(*exc)
        return Wrap()
    monkeypatch.setattr(ModelPool, "lease", watched_lease)
    svc = Services(ModelPool(), get_embedder())
    with open_image(str(path)) as img:
        for text in ("Remember that my cat is called Pixel.", "What is the capital of France?"):
            with img.transaction() as conn:
                mid = new_mission(conn.root(), "hermes", text, options={"max_tokens": 12}).id
            assert run_mission(img, mid, svc)["state"] == "COMPLETE"
        with img.view() as root:
            assert "Pixel" in notebook.get(root, "hermes").text
    request = "What is my cat called?"
    proc = run_batos("context", "hermes", request, "--json", env=env, check=True, timeout=300)
    shown = json.loads(proc.stdout.splitlines()[-1])
    assert "Pixel" in shown["messages"][0]["content"]
    kinds = {p["kind"] for p in shown["parts"]}
    assert {"notebook", "recall"} <= kinds and shown["notebook_version"] == 1
    with open_image(str(path)) as img:
        with img.transaction() as conn:
            mid = new_mission(conn.root(), "hermes", request, options={"max_tokens": 12}).id
        run_mission(img, mid, svc)
    assert sent[-1] == shown["messages"]


def test_bundled_summarises_a_long_conversation(bundled):
    from image import open_image
    from kernel.context import prepare
    path, _ = bundled
    history = []
    for i in range(10):
        history += [{"role": "user", "content": f"Day {i} of the trip: we visited the museum of "
                                                f"{['glass', 'maps', 'clocks', 'trains', 'salt'][i % 5]} "
                                                "and ate fish soup by the harbour."},
                    {"role": "assistant", "content": "That sounds like a lovely day."}]
    pool = ModelPool()
    with open_image(str(path)) as img, img.view() as root:
        info = pool.describe(root, "hermes")
        with pool.lease(info) as model:
            watched = Watched(model)
            made = {}
            asm, _ = prepare(img, root, "hermes", "Which museums did we visit?", model=watched,
                             identity="You are Hermes.", budget=400, history=history, made=made)
    assert asm.summarized >= 4 and watched.summaries == -(-asm.summarized // 4)   # per fold
    summary = asm.messages[0]["content"].split("Earlier in this conversation (summary):\n")[1]
    assert summary.strip() and made[max(made, key=lambda k: made[k]["pairs"])]["text"] == summary
    assert asm.tokens <= 400


def test_bundled_cli_queries_notebook_and_prune(bundled, tmp_path):
    path, env = bundled
    queries = tmp_path / "q.txt"
    queries.write_text("What is my cat called?\n\nWhat did I say on 3 March?\n")
    proc = run_batos("context", "hermes", "--queries", queries, "--json", env=env, check=True,
                     timeout=300)
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert [r["request"] for r in rows] == ["What is my cat called?", "What did I say on 3 March?"]
    assert all(r["messages"][-1]["content"] == r["request"] and r["tokens"] > 0 for r in rows)
    proc = run_batos("mind", "notebook", "hermes", "--add", "The owner's dog is Rex.", env=env,
                     check=True, timeout=300)
    proc = run_batos("mind", "notebook", "hermes", "--json", env=env, check=True)
    nb = json.loads(proc.stdout)
    assert nb["text"].endswith("- The owner's dog is Rex.") and nb["versions"][-1]["by"] == "owner"
    proc = run_batos("mind", "notebook", "hermes", "--set", "word " * 400, env=env, timeout=300)
    assert proc.returncode != 0 and "over its cap of 256" in proc.stderr
    assert json.loads(run_batos("mind", "notebook", "hermes", "--json", env=env,
                                check=True).stdout)["version"] == nb["version"]    # unchanged
    proc = run_batos("ledger", "prune", "hermes", "--rating", "bad", "--dry-run", "--json",
                     env=env, check=True)
    assert json.loads(proc.stdout) == {"mind": "hermes", "forgotten": 0, "dry_run": True}
    proc = run_batos("ledger", "prune", "hermes", env=env)
    assert proc.returncode != 0 and "--older-than DAYS" in proc.stderr
