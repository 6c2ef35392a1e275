import math

import pytest

from codistill.errors import ConfigError
from codistill.progress import Progress
from codistill.schedules import Linear, Phases, Ramp, as_schedule, minimum_over


def at(epoch_float: float, total: int = 10, steps: int = 100) -> Progress:
    epoch = int(epoch_float)
    return Progress(epoch=epoch, step=round((epoch_float - epoch) * steps), steps_per_epoch=steps, total_epochs=total)


def test_progress_fraction_and_global_step():
    p = at(2.5)
    assert p.epoch_float == pytest.approx(2.5)
    assert p.fraction == pytest.approx(0.25)
    assert p.global_step == 250


def test_constant_from_number():
    assert as_schedule(3)(at(7)) == 3.0


def test_linear_is_flat_outside_its_span():
    s = as_schedule({"kind": "linear", "start": 0.0, "end": 1.0, "start_epoch": 2, "end_epoch": 6})
    assert [s(at(e)) for e in (0, 2, 4, 6, 9)] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_ramp_matches_one_formula():
    s = Ramp(value=2.0, ramp_epochs=80)
    assert s(at(0, total=200)) == pytest.approx(2.0 * math.exp(-5.0))
    assert s(at(40, total=200)) == pytest.approx(2.0 * math.exp(-5.0 * 0.25))
    assert s(at(120, total=200)) == pytest.approx(2.0)


def test_steps_piecewise():
    s = as_schedule({"kind": "steps", "values": [0.0, 0.5, 1.0], "epochs": [3, 6]})
    assert [s(at(e)) for e in (0, 2.9, 3, 5, 6, 9)] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_steps_pieces_may_be_schedules():
    ramp = {"kind": "ramp", "value": 1.0, "ramp_epochs": 4}
    s = as_schedule({"kind": "steps", "values": [ramp, {"kind": "ramp", "value": 2.0, "ramp_epochs": 4}, 0.5],
                     "epochs": [2, 5]})
    first, second = as_schedule(ramp), Ramp(value=2.0, ramp_epochs=4)
    assert s(at(1.5)) == first(at(1.5)) and s(at(3.25)) == second(at(3.25)) and s(at(7)) == 0.5


def test_phases_on_share_grows_and_gate_is_binary():
    gate = Phases(period_epochs=2, on_start=0.25, on_end=1.0)
    grid = [e / 20 for e in range(200)]
    values = [gate(at(e)) for e in grid]
    assert set(values) == {0.0, 1.0}
    first, last = values[:40], values[-40:]
    assert sum(first) / len(first) < 0.5 < sum(last) / len(last)
    assert all(v == 1.0 for v in values[-10:])  # the constraint ends fully on
    assert gate(at(0.0)) == 1.0 and gate(at(1.0)) == 0.0  # first period: on for its first quarter


def test_phases_off_before_start():
    gate = Phases(period_epochs=1, on_start=1.0, start_epoch=3)
    assert gate(at(2.9)) == 0.0 and gate(at(3.1)) == 1.0


def test_schedules_are_pure():
    s = as_schedule({"kind": "phases", "period_epochs": 3, "on_start": 0.5})
    assert [s(at(e / 7)) for e in range(70)] == [s(at(e / 7)) for e in range(70)]


@pytest.mark.parametrize("spec, field", [
    ({"kind": "zigzag"}, "weight.kind"),
    ({"kind": "ramp", "value": 1}, "weight"),
    ({"kind": "phases", "period_epochs": 0, "on_start": 0.5}, "weight.period_epochs"),
    ({"kind": "steps", "values": [1, 2], "epochs": [1, 2]}, "weight"),
    ("high", "weight"),
    ({"kind": "steps", "values": [1, {"kind": "zigzag"}], "epochs": [1]}, "weight.values[1].kind"),
    (True, "weight"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(ConfigError) as error:
        as_schedule(spec, "weight")
    assert error.value.field == field


def test_minimum_over_detects_negative_values():
    assert minimum_over(Linear(start=1.0, end=-1.0), total_epochs=10) == pytest.approx(-1.0)
