"""The public surface: a curated, sorted __all__ whose every name exists and is documented."""

from __future__ import annotations

import inspect

import veo_async


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (case-sensitively) and every name in it exists."""
    assert list(veo_async.__all__) == sorted(veo_async.__all__)
    for name in veo_async.__all__:
        assert hasattr(veo_async, name), name


def test_public_names_have_docstrings() -> None:
    """Every public class and function has a docstring, and so do their public methods."""
    missing: list[str] = []
    for name in veo_async.__all__:
        obj = getattr(veo_async, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not inspect.isfunction(member):
                    continue
                if not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_version() -> None:
    """The package exposes its version."""
    assert veo_async.__version__ == "0.1.0"


def test_cli_reference_is_current() -> None:
    """docs/cli.md matches the command's --help (regenerate: python scripts/gen_cli_docs.py)."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gen_cli_docs", root / "scripts/gen_cli_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_cli_docs"] = module
    spec.loader.exec_module(module)
    assert (root / "docs/cli.md").read_text(encoding="utf-8") == module.render()
