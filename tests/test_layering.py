"""The split between device and server shows in the imports (read from the source, nothing run).

- Device code (``keyboard/``), the model (``lm/``) and the tokenizer never import server code
  (``federated/``, ``eval/``) or the CLI (``fedkb/``).
- ``common/``, the formats both sides share, imports nothing else of the repo.
- Nothing imports the CLI; and the live coordinator (with its evaluation and promotion) does not
  import the device store.
"""

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("common", "lm", "tokenizer", "keyboard", "federated", "eval", "fedkb")


def imports(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` and the repo packages it imports (at any depth of the file)."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(REPO))] = {n for n in names if n.split(".")[0] in PACKAGES}
    return out


@pytest.mark.parametrize("package, forbidden", [
    ("keyboard", {"federated", "eval", "fedkb"}),
    ("lm", {"federated", "eval", "fedkb", "keyboard"}),
    ("tokenizer", {"federated", "eval", "fedkb", "keyboard"}),
    ("common", set(PACKAGES) - {"common"}),
    ("federated", {"fedkb"}),
    ("eval", {"fedkb"}),
])
def test_a_layer_never_imports_the_layers_above_it(package, forbidden):
    bad = {module: sorted(n for n in names if n.split(".")[0] in forbidden)
           for module, names in imports(package).items()}
    assert not {m: b for m, b in bad.items() if b}


def test_the_coordinator_never_imports_the_device_store():
    seen, todo = set(), ["federated.coordinator", "federated.service"]
    while todo:  # the module-level imports it pulls in, transitively
        name = todo.pop()
        path = REPO / (name.replace(".", "/") + ".py")
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: functions of the simulation import lazily
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
    assert "keyboard.store" not in seen and "federated.population" not in seen, sorted(seen)
    # live evaluation, promotion and version pulls are served from these, so the rule covers them too
    assert {"federated.live_eval", "federated.promotion", "federated.registry"} <= seen, sorted(seen)
    # the secure-aggregation mixin and the gRPC service are the coordinator's too
    assert {"federated.coordinator_secagg", "federated.service"} <= seen, sorted(seen)


def test_nothing_imports_the_cli_and_the_commands_share_only_fedkb_options():
    every = {m: names for p in PACKAGES for m, names in imports(p).items()}
    importers = sorted(m for m, names in every.items() if "fedkb.cli" in names)
    assert importers == [], importers
    assert "fedkb.cmd_" not in " ".join(imports("fedkb")["fedkb/options.py"])


def test_the_report_and_its_plots_do_not_import_each_other():
    mods = imports("eval")  # the report draws with the plots; the plots take the results' dataclasses
    assert "eval.report" not in mods["eval/plots.py"], mods["eval/plots.py"]
    assert mods["eval/results.py"] == set()
