import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoclim.data import units, variables
from geoclim.errors import SchemaError


@pytest.mark.parametrize(
    ("text", "spelling"),
    [
        ("C", "degC"),
        ("degC", "degC"),
        ("deg_C", "degC"),
        ("Celsius", "degC"),
        ("K", "K"),
        ("hPa", "hPa"),
        ("ppm", "ppm"),
        ("ppbv", "ppb"),
        ("ppb", "ppb"),
        ("ug/m3", "ug m-3"),
        ("µg m-3", "ug m-3"),
        ("ug m-3", "ug m-3"),
        ("kg m-2 s-1", "kg m-2 s-1"),
        ("m s-1", "m s-1"),
        ("m/s", "m s-1"),
        ("1", "1"),
        ("%", "%"),
        ("Micrograms/cubic meter (LC)", "ug m-3"),
        ("Micrograms/cubic meter (25 C)", "ug m-3"),
        ("ug/m3 SC", "ug m-3"),
        ("Parts per billion", "ppb"),
        ("Parts per million", "ppm"),
        ("Millibars", "hPa"),
        ("Knots", "knot"),
        ("Degrees Fahrenheit", "degF"),
        ("W/m2", "W m-2"),
    ],
)
def test_unit_strings_parse_to_one_spelling(text, spelling):
    assert variables.normalise_units(text) == spelling


@pytest.mark.parametrize(
    ("source", "target", "factor", "offset"),
    [
        ("degC", "K", 1.0, 273.15),
        ("C", "K", 1.0, 273.15),
        ("Celsius", "degC", 1.0, 0.0),
        ("K", "degC", 1.0, -273.15),
        ("degF", "degC", 5 / 9, -160 / 9),
        ("hPa", "Pa", 100.0, 0.0),
        ("Millibars", "hPa", 1.0, 0.0),
        ("ppm", "ppb", 1000.0, 0.0),
        ("ppbv", "ppb", 1.0, 0.0),
        ("mg/m3", "ug m-3", 1000.0, 0.0),
        ("µg m-3", "ug/m3", 1.0, 0.0),
        ("%", "1", 0.01, 0.0),
        ("1", "%", 100.0, 0.0),
        ("kg m-2 s-1", "g m-2 h-1", 3.6e6, 0.0),
        ("km h-1", "m s-1", 1 / 3.6, 0.0),
        ("Knots", "m s-1", 1852 / 3600, 0.0),
    ],
)
def test_conversions_have_exact_factors(source, target, factor, offset):
    c = units.conversion(source, target)
    assert c.factor == pytest.approx(factor, rel=1e-14)
    assert c.offset == pytest.approx(offset, rel=1e-14, abs=1e-12)


def test_ppm_to_ppb_is_exactly_a_thousand():
    assert units.conversion("ppm", "ppb").factor == 1000.0
    np.testing.assert_array_equal(
        units.convert(np.array([0.0, 15.0]), "degC", "K"), [273.15, 288.15]
    )


def test_gas_mass_concentration_needs_stated_conditions():
    with pytest.raises(SchemaError, match="needs a stated reference temperature and pressure"):
        units.conversion("ug/m3", "ppb", molar_mass=46.01, name="no2")
    ref = units.Reference(25.0, 1013.25)
    c = units.conversion("ug/m3", "ppb", molar_mass=46.01, reference=ref, name="no2")
    # x[ppb] = c[ug m-3] * R T / (M p) * 1e3 with R = 8.31446261815324 J mol-1 K-1
    expected = 8.31446261815324 * 298.15 / (46.01 * 101325.0) * 1e3
    assert c.factor == pytest.approx(expected, rel=1e-12)
    back = units.conversion("ppb", "ug m-3", molar_mass=46.01, reference=ref)
    assert back.factor * c.factor == pytest.approx(1.0, rel=1e-12)
    at_20 = units.conversion(
        "ug/m3", "ppb", molar_mass=46.01, reference=units.Reference(20, 1013.25)
    )
    assert at_20.factor / c.factor == pytest.approx(293.15 / 298.15, rel=1e-12)
    assert "at 25 degC, 1013.25 hPa" in str(c)


def test_particles_have_no_mixing_ratio():
    with pytest.raises(SchemaError, match="'pm25': cannot convert 'ppb' to 'ug m-3'"):
        variables.conversion("pm25", "ppb", reference_temperature_c=25)


@pytest.mark.parametrize("bad", ["bananas", "", "   ", "hours since 2000-01-01"])
def test_unknown_units_are_named(bad):
    with pytest.raises(SchemaError, match="units"):
        units.parse(bad)


def test_incompatible_units_are_refused():
    with pytest.raises(SchemaError, match="incompatible units"):
        units.conversion("kg m-2 s-1", "mm h-1")  # needs the density of water
    with pytest.raises(SchemaError, match="cannot convert 'K' to 'm s-1'"):
        units.conversion("K", "m s-1")
    assert not units.equivalent("ppm", "ppb") and units.equivalent("ug/m3", "µg m-3")
    assert units.is_mass_concentration("Micrograms/cubic meter (LC)")
    assert units.is_mixing_ratio("ppbv") and not units.is_mixing_ratio("degree")


PAIRS = [("degC", "K"), ("degF", "K"), ("hPa", "Pa"), ("ppm", "ppb"), ("mg/m3", "ug m-3")]


@given(st.sampled_from(PAIRS), st.floats(-1e6, 1e6, allow_nan=False))
def test_conversion_there_and_back_is_the_identity(pair, value):
    there = units.convert(np.array([value]), *pair)
    back = units.convert(there, *pair[::-1])
    np.testing.assert_allclose(back, [value], rtol=1e-12, atol=1e-9)
