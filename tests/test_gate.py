"""The gate on real models (the bundled SmolLM2, a broken random one) and its logic."""
import pytest
from scripted_engine import ScriptedEngine

from mindhost.engines import get_engine
from mindhost.schema import HERMES_IDENTITY
from night.gate import passed, run_gate

HELDOUT = [[{"role": "system", "content": HERMES_IDENTITY},
            {"role": "user", "content": "What is the capital of Italy?"},
            {"role": "assistant", "content": "The capital of Italy is Rome."}]]


@pytest.fixture(scope="module")
def smol(smol_master):
    model = get_engine("torch").load(smol_master["path"])
    yield model
    model.unload()


def by_name(checks):
    return {c.name: c for c in checks}


def test_a_generation_equal_to_the_last_passes(smol, smol_master):
    again = get_engine("torch").load(smol_master["path"])
    checks = by_name(run_gate(smol, again, name="hermes", role="majordomo",
                              identity=HERMES_IDENTITY, heldout=HELDOUT,
                              settings={"max_tokens": 24}))
    assert passed(checks.values()), checks
    assert checks["capability"].value >= 1          # it knows Paris, at least
    assert checks["heldout_kl"].value == pytest.approx(0.0, abs=1e-6)
    assert checks["drift_kl"].value == pytest.approx(0.0, abs=1e-6)
    assert checks["heldout_ppl_ratio"].value == pytest.approx(1.0, abs=1e-4)


def test_a_broken_generation_is_rejected_with_its_reasons(smol, tiny_llama):
    broken = get_engine("torch").load(tiny_llama)     # random weights, same tokenizer
    checks = by_name(run_gate(smol, broken, name="hermes", role="majordomo",
                              identity=HERMES_IDENTITY, heldout=HELDOUT,
                              settings={"max_tokens": 24}))
    assert not passed(checks.values())
    assert not checks["capability"].passed and "capital of France" in checks["capability"].detail
    assert not checks["heldout_kl"].passed and checks["heldout_kl"].value > 1.0
    assert not checks["drift_kl"].passed and "gate prompts" in checks["drift_kl"].detail


def test_paraphrase_robustness_of_a_taught_habit():
    taught = [[{"role": "system", "content": "x"}, {"role": "user", "content": "Question 1?"},
               {"role": "assistant", "content": "At your service, sir."}]]
    habit = ScriptedEngine(lambda text: "At your service, sir. Paris, five, blue, seven.").load()
    forgot = ScriptedEngine(lambda text: "Hello. Paris, five, blue, seven.").load()
    ok = by_name(run_gate(habit, habit, name="hermes", role="majordomo", identity="x",
                          taught=taught))
    assert ok["paraphrase"].passed and ok["paraphrase"].value == 1.0
    bad = by_name(run_gate(habit, forgot, name="hermes", role="majordomo", identity="x",
                           taught=taught))
    assert not bad["paraphrase"].passed and bad["paraphrase"].value == 0.0


def test_given_loaders_the_gate_holds_one_generation_at_a_time():
    held, events = [], []
    engine = ScriptedEngine(lambda text: "At your service, sir. Paris, five, blue, seven.")

    def loader(label):
        def load():
            assert not held, f"{label} loaded while {held} is still held"
            model = engine.load()
            held.append(label)
            events.append(f"load {label}")
            model.unload = lambda: (held.remove(label), events.append(f"unload {label}"))
            return model
        return load
    checks = by_name(run_gate(loader("previous"), loader("new"), name="hermes",
                              role="majordomo", identity="x", heldout=HELDOUT))
    assert events == ["load previous", "unload previous", "load new", "unload new"]
    assert checks["heldout_kl"].value == pytest.approx(0.0) and passed(checks.values())
