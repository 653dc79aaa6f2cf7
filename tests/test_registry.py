"""The name -> object registry (graphzoo.registry) and its "did you mean" hint."""

from __future__ import annotations

import pytest

from graphzoo.registry import Registry, did_you_mean


@pytest.fixture
def shapes() -> Registry:
    reg = Registry("shape")

    @reg.register("square")
    def square(x):
        return x * x

    @reg.register()  # default name: the function's own
    def cube(x):
        return x**3

    return reg


def test_register_and_get(shapes):
    assert shapes.get("square")(3) == 9
    assert shapes.get("cube")(2) == 8
    assert shapes.get("cube").__name__ == "cube"  # the decorator returns its target unchanged


def test_register_a_class():
    reg = Registry("reader")

    @reg.register("csv")
    class CsvReader:
        pass

    assert reg.get("csv") is CsvReader


def test_duplicate_name_is_refused_and_keeps_the_first(shapes):
    first = shapes.get("square")
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.register("square")(lambda x: -x)
    assert shapes.get("square") is first
    assert len(shapes) == 2


def test_unknown_name_suggests_the_closest_and_lists_all(shapes):
    with pytest.raises(ValueError) as err:
        shapes.get("sqare")
    message = str(err.value)
    assert message == "Unknown shape 'sqare'. Did you mean 'square'? Available: cube, square."


def test_unknown_name_without_a_close_match_lists_all(shapes):
    with pytest.raises(ValueError, match=r"^Unknown shape 'hexagon'\. Available: cube, square\.$"):
        shapes.get("hexagon")


def test_non_string_name_is_a_type_error(shapes):
    with pytest.raises(TypeError, match="shape name must be a string, got int"):
        shapes.get(3)


def test_names_contains_iteration_len_repr(shapes):
    assert shapes.names() == ["cube", "square"]  # sorted, not in registration order
    assert list(shapes) == ["cube", "square"]
    assert "square" in shapes and "circle" not in shapes and 3 not in shapes
    assert len(shapes) == 2 and len(Registry("empty")) == 0
    assert repr(shapes) == "Registry('shape', names=['cube', 'square'])"


def test_registries_are_independent(shapes):
    other = Registry("shape")
    other.register("square")(lambda x: x)  # the same name in another registry is fine
    assert "cube" not in other and other.get("square") is not shapes.get("square")


@pytest.mark.parametrize(
    "name,options,hint",
    [
        ("poison", ["laplace", "poisson"], " Did you mean 'poisson'?"),
        ("resnt18", ("resnet18", "resnet50"), " Did you mean 'resnet18'?"),
        ("xyz", ["laplace", "poisson"], ""),
        ("anything", [], ""),
        (18, {"resnet18": None}, ""),  # a non-string name is compared as its str()
        ("n_neighbor", {"n_neighbors": 50, "metric": "cosine"}, " Did you mean 'n_neighbors'?"),
    ],
)
def test_did_you_mean(name, options, hint):
    assert did_you_mean(name, options) == hint


def test_project_registries_use_the_registry():
    """Every plug-in kind that graphzoo registers is a Registry with at least one entry."""
    from graphzoo import ENERGIES
    from graphzoo.models import BACKBONES

    for reg in (ENERGIES, BACKBONES):
        assert isinstance(reg, Registry) and len(reg) > 0


def test_did_you_mean_explains_a_yaml_key_without_a_space():
    from graphzoo.registry import did_you_mean

    assert "space after the colon (alpha: 2)" in did_you_mean("alpha:2", ["alpha"])
