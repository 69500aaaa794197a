"""A short fuzz of the image loader, the CSV reader and the config reader (the long run: fuzz/run.py)."""
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parents[1] / "fuzz"))
from targets import TARGETS, check_config_dict  # noqa: E402

SHORT = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reader_returns_a_result_or_its_documented_error(name, tmp_path):
    strategy, check = TARGETS[name]
    outcomes = []

    @SHORT
    @given(strategy)
    def prop(x):
        outcomes.append(check(x, tmp_path))

    prop()
    assert len(outcomes) >= 100 and "refused" in outcomes  # the generators do reach the error paths


def test_seed_inputs_are_read():
    """The fuzzers start from inputs that work: every seed image and a real config are read."""
    from targets import SEED_IMAGES, check_image

    import tempfile

    d = Path(tempfile.mkdtemp())
    assert [check_image(b, d) for b in SEED_IMAGES] == ["read"] * len(SEED_IMAGES)
    assert check_config_dict({"strategy": "head", "epochs": 3, "input_shape": [64, 64, 3]}) == "read"
    assert check_config_dict({"epochs": -3}) == "refused"
