"""Context assembly within a token budget, and each mind's exchange ledger."""
import numpy as np
import pytest
import transaction

from memory import ledger
from mindhost.context import ContextOverflow, assemble, measurer


@pytest.fixture(scope="module")
def tiny_model(tiny_llama):
    from mindhost.engines import get_engine
    model = get_engine("torch").load(tiny_llama)
    yield model
    model.unload()


HISTORY = [t for i in range(6) for t in (
    {"role": "user", "content": f"question number {i} about the rivers of Europe"},
    {"role": "assistant", "content": f"answer number {i}: the Danube, the Rhine and the Loire"})]
MEMORIES = [(f"notes/{i}.md", f"memory fact {i}: " + "the river is long and wide. " * 3)
            for i in range(8)]


def test_everything_fits_when_the_budget_is_large(tiny_model):
    a = assemble("You are Orai.", "Which river is longest?", measure=measurer(tiny_model),
                 budget=4000, history=HISTORY, memories=MEMORIES)
    assert a.turns_used == 6 and a.turns_dropped == 0 and a.memory_used == 8
    assert a.messages[0]["role"] == "system" and "Relevant memory" in a.messages[0]["content"]
    assert a.messages[-1] == {"role": "user", "content": "Which river is longest?"}
    assert a.messages[1:-1] == HISTORY and a.sources == [s for s, _ in MEMORIES]


@pytest.mark.parametrize("budget", [90, 160, 260, 400])
def test_budget_holds_and_keeps_identity_request_and_newest_turns(tiny_model, budget):
    measure = measurer(tiny_model)
    a = assemble("You are Orai.", "Which river is longest?", measure=measure, budget=budget,
                 history=HISTORY, memories=MEMORIES, memory_share=0.4)
    assert a.tokens == measure(a.messages) <= budget
    assert a.messages[0]["content"].startswith("You are Orai.")
    assert a.messages[-1]["content"] == "Which river is longest?"
    kept = a.messages[1:-1]
    assert kept == HISTORY[len(HISTORY) - len(kept):]          # the newest, in order
    assert a.turns_used + a.turns_dropped == 6 and a.memory_used + a.memory_dropped == 8
    if a.turns_dropped:
        assert f"{a.turns_dropped} earlier turn" in a.messages[0]["content"]
    assert a.sources == [s for s, _ in MEMORIES[: a.memory_used]]   # best first


def test_more_budget_never_keeps_less(tiny_model):
    measure = measurer(tiny_model)
    sizes = [assemble("You are Orai.", "Which river?", measure=measure, budget=b,
                      history=HISTORY, memories=MEMORIES) for b in (100, 200, 400, 800)]
    assert [s.turns_used for s in sizes] == sorted(s.turns_used for s in sizes)
    assert [s.memory_used for s in sizes] == sorted(s.memory_used for s in sizes)


def test_overflow_is_a_clear_error(tiny_model):
    with pytest.raises(ContextOverflow, match="budget is 10"):
        assemble("You are Orai. " * 20, "Which river?", measure=measurer(tiny_model), budget=10)


def test_ledger_packets(mem_image):
    from memory.embed import get_embedder
    emb = get_embedder()
    a = ledger.packet(emb, "hermes", "What is the capital of France?", "Paris.", mission="m1")
    b = ledger.packet(emb, "hermes", "And of Italy?", "Rome.")
    assert np.frombuffer(a.vector, "<f4").shape == (emb.dim,)
    with mem_image.transaction() as conn:
        root = conn.root()
        ka, kb = ledger.record(root, a), ledger.record(root, b)
    assert ka < kb
    with mem_image.transaction() as conn:
        ledger.rate(conn.root(), "hermes", ka, "good", "exact")
    with mem_image.view() as root:
        got = ledger.recent(root, "hermes", 5)
        assert [k for k, _ in got] == [ka, kb] and ledger.recent(root, "orai", 5) == []
        assert dict(got[0][1].signals) == {"rating": "good", "note": "exact"}
        assert got[0][1].mission == "m1" and got[0][1].mind == "hermes"
        assert ledger.as_history(got)[2:] == [{"role": "user", "content": "And of Italy?"},
                                              {"role": "assistant", "content": "Rome."}]
        from mindhost.quant_report import ledger_prompts
        assert ledger_prompts(root, "hermes") == ["What is the capital of France?", "And of Italy?"]
    with mem_image.transaction() as conn, pytest.raises(ValueError, match="good, bad"):
        ledger.rate(conn.root(), "hermes", ka, "meh")


def test_two_writers_append_without_conflict(folder_image):
    """Two connections record exchanges at once; BTree conflict resolution merges them."""
    db = folder_image.db
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(transaction_manager=tm1), db.open(transaction_manager=tm2)
    vec = np.zeros(4, "<f4").tobytes()
    k1 = ledger.record(c1.root(), ledger.Exchange("orai", "a", "b", vec, 1.0))
    k2 = ledger.record(c2.root(), ledger.Exchange("orai", "c", "d", vec, 1.0))
    tm1.commit()
    tm2.commit()
    c1.close()
    c2.close()
    with folder_image.view() as root:
        assert sorted(root["orai"].ledger.keys()) == sorted([k1, k2])
