"""The house's rules, read from the sources' imports: the domain is plain Python, its rooms import downwards
only, Dagster's private modules are used in the two named places, and no folder outgrows a reader."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alchemy_pipeline"
# The domain's rooms, lowest first: a room may import its own modules and those of rooms before it.
DOMAIN_ROOMS = ["numbers", "control_plane", "signals", "market", "backtest", "lab", "site"]
# Where a private Dagster module may be imported, and why (each module's header says it in full).
PRIVATE_DAGSTER_ALLOWED = {
    "local_storage.py": "the local instance's storage, documented there",
    "control_plane_watch.py": "the instance's tick and instigator reads, which have no public API",
}
MAX_MODULES_PER_FOLDER = 12


def imports_of(path: Path) -> list[str]:
    """The modules ``path`` imports, absolute (``from . import x`` is resolved against its package)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join([*package, *([base] if base else [])])
            names += [f"{base}.{alias.name}" for alias in node.names] if not node.module else [base]
    return names


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] == ["alchemy_pipeline", "domain"] and len(parts) > 2:
        return parts[2]
    return None


@pytest.mark.parametrize("folder", ["domain", "infrastructure"])
def test_the_domain_and_its_infrastructure_are_plain_python(folder):
    using_dagster = {
        str(p.relative_to(PACKAGE)): name
        for p in sources(PACKAGE / folder)
        for name in imports_of(p)
        if name.split(".")[0] in {"dagster", "dagster_aws", "dagster_postgres"}
    }
    assert using_dagster == {}


def test_infrastructure_imports_nothing_of_the_project():
    upward = {
        str(p.relative_to(PACKAGE)): name
        for p in sources(PACKAGE / "infrastructure")
        for name in imports_of(p)
        if name.startswith("alchemy_pipeline") and not name.startswith("alchemy_pipeline.infrastructure")
    }
    assert upward == {}


def test_the_domains_rooms_import_downwards_only():
    upward = []
    for path in sources(PACKAGE / "domain"):
        own = room_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if own is None:  # domain/__init__.py
            continue
        for name in imports_of(path):
            if name.startswith("alchemy_pipeline.defs") or name == "alchemy_pipeline.settings":
                upward.append((str(path.relative_to(PACKAGE)), name))
            other = room_of(name)
            if other is not None and DOMAIN_ROOMS.index(other) > DOMAIN_ROOMS.index(own):
                upward.append((str(path.relative_to(PACKAGE)), name))
    assert upward == []


def test_private_dagster_modules_only_in_the_named_places():
    used = {
        str(p.relative_to(PACKAGE)): name
        for p in sources(PACKAGE)
        for name in imports_of(p)
        if name.startswith("dagster._") and p.name not in PRIVATE_DAGSTER_ALLOWED
    }
    assert used == {}


def test_no_folder_holds_more_modules_than_a_reader_takes_in():
    crowded = {}
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > MAX_MODULES_PER_FOLDER:
            crowded[str(folder.relative_to(PACKAGE.parent))] = len(modules)
    assert crowded == {}


def test_every_room_says_what_belongs_there():
    rooms = [p for p in [PACKAGE / "domain", PACKAGE / "infrastructure", *(PACKAGE / "domain").iterdir()] if p.is_dir()]
    undocumented = [
        str(room.relative_to(PACKAGE))
        for room in rooms
        if room.name != "__pycache__"
        and not ast.get_docstring(ast.parse((room / "__init__.py").read_text(encoding="utf-8")))
    ]
    assert undocumented == []
