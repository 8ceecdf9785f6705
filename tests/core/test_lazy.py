"""agent_core.lazy: names imported on first read, then plain attributes."""

import sys
import types

import pytest

from agent_core.lazy import lazy_exports


def test_a_name_loads_on_first_read_and_is_kept() -> None:
    package = types.ModuleType("lazy_probe")
    sys.modules["lazy_probe"] = package
    try:
        package.__getattr__, package.__dir__ = lazy_exports(  # type: ignore[method-assign]
            "lazy_probe", {"OrderedDict": "collections", "dedent": "textwrap"}
        )
        assert "dedent" not in vars(package)
        import textwrap

        assert package.dedent is textwrap.dedent
        assert vars(package)["dedent"] is textwrap.dedent  # stored: no second import
        assert {"OrderedDict", "dedent"} <= set(dir(package))
        with pytest.raises(AttributeError, match="'lazy_probe' has no attribute 'missing'"):
            _ = package.missing
    finally:
        del sys.modules["lazy_probe"]


def test_agent_core_exports_through_the_helper() -> None:
    import agent_core
    import agent_core.dependencies

    assert agent_core.Runner.__name__ == "Runner"
    assert agent_core.dependencies.Depends is agent_core.Depends
    with pytest.raises(AttributeError):
        _ = agent_core.NoSuchName
