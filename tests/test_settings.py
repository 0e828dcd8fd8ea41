"""One settings layer: every settings slot and the kernel's options refuse unknown keys and
wrong types with the same error, SettingsError, naming the slot and every problem."""
import pytest

from image.errors import SettingsError
from kernel.extend import ExtensionSettings
from kernel.options import KernelOptions, options
from mindhost.settings import EngineSettings, RoutingSettings
from night.curate import CurationSettings, settings_for
from night.gate import GateSettings
from night.merge import MergeSettings
from night.train import TrainConfig
from prototypes import settings as st

KINDS = [TrainConfig, MergeSettings, GateSettings, CurationSettings, ExtensionSettings,
         EngineSettings, RoutingSettings, KernelOptions]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_every_kind_refuses_an_unknown_key_and_names_the_closest(kind):
    first = next(iter(st.defaults(kind)))
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    with pytest.raises(SettingsError) as e:
        st.check(kind, {typo: 1}, where="somewhere.slot")
    msg = str(e.value)
    assert msg.startswith("somewhere.slot has bad settings") and repr(typo) in msg
    assert f"did you mean {first!r}" in msg


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_every_kind_refuses_a_wrong_type_and_its_defaults_round_trip(kind):
    defaults = st.defaults(kind)
    assert st.plain(st.check(kind, defaults, where="x")) == defaults
    name, value = next((k, v) for k, v in defaults.items() if v is not None)
    wrong = "text" if not isinstance(value, str) else 12
    with pytest.raises(SettingsError, match=f"{name} must be"):
        st.check(kind, {name: wrong}, where="x")


def test_all_problems_are_named_at_once_and_it_is_a_value_error():
    with pytest.raises(ValueError) as e:
        TrainConfig.from_settings({"iters": 0, "batch_size": True, "rnak": 4})
    msg = str(e.value)
    assert "iters is 0; it must be ≥ 1" in msg and "batch_size must be a whole number" in msg
    assert "'rnak' (did you mean 'rank'?)" in msg


def test_a_mapping_updates_its_default_and_each_mind_has_its_own_base(mem_image):
    with mem_image.transaction() as conn:
        conn.root()["hermes"].curation = {"weights": {"good": 5}}
    with mem_image.view() as root:
        h, o = settings_for(root["hermes"]), settings_for(root["orai"])
    assert h["weights"]["good"] == 5.0 and h["weights"]["requery"] == -1.5   # Hermes' base
    assert o["weights"]["good"] == 3.0 and o["weights"]["delegated"] == 1.0
    assert h["weights"]["bad"] == -3.0


def test_the_kernel_options_check_addresses_too():
    assert options().http_address() == ("127.0.0.1", 8421)
    assert options(http="off").http_address() is None
    assert options(dream_at="now").dream_time() == "now"
    with pytest.raises(SettingsError, match="bad dream_at '25:00'"):
        options(dream_at="25:00")
    with pytest.raises(SettingsError, match="threads is -1"):
        options(threads=-1)


def test_a_mistyped_slot_in_the_image_is_a_clear_error_on_the_path_that_reads_it(mem_image):
    from kernel.extend import settings_of
    from mindhost import minds
    with mem_image.transaction() as conn:
        conn.root()["extension"].retries = "two"
        conn.root()["orai"].engine["max_tokns"] = 3
    with mem_image.view() as root:
        with pytest.raises(SettingsError, match=r"root\['extension'\] has bad settings: retries"):
            settings_of(root["extension"])
        with pytest.raises(SettingsError, match="orai.engine has bad settings: unknown setting "
                                                "'max_tokns' \\(did you mean 'max_tokens'"):
            from mindhost.pool import ModelPool
            ModelPool({"orai": object()}).describe(root, "orai")
        assert minds.MINDS


def test_method_limits_speak_the_same_error():
    from guardians import limits
    with pytest.raises(SettingsError, match="method_limits has bad settings: unknown setting"):
        limits.check({"secs": 1})


def test_persistent_lists_and_non_mappings_get_the_same_treatment():
    from persistent.list import PersistentList
    r = st.check(RoutingSettings, {"keywords": PersistentList(["poem"])}, where="hermes.routing")
    assert r.keywords == ("poem",)
    with pytest.raises(SettingsError, match="weights must be a mapping"):
        st.check(CurationSettings, {"weights": ["good"]}, where="x", base={"weights": {"good": 1}})
    with pytest.raises(SettingsError, match="http must be set, not None"):
        options({"http": None})


def test_an_unmigrated_cursor_is_still_read_and_migration_keeps_the_later(mem_image):
    from kernel.schema import bootstrap
    from night.schema import cursor
    with mem_image.transaction() as conn:
        conn.root()["hermes"].curation = {"since": "0002", "threshold": 0.4}
    with mem_image.view() as root:
        assert cursor(root["hermes"]) == "0002"
        assert settings_for(root["hermes"])["threshold"] == 0.4     # "since" is not a setting
    bootstrap(mem_image)
    with mem_image.view() as root:
        h = root["hermes"]
        assert h.curated_until == "0002" and dict(h.curation) == {"threshold": 0.4}
