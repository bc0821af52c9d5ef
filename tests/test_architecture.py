"""The shape of the code: modules on their floors with imports pointing down, no import circles, sizes a reader
can hold, and the config read only at a stage's door (docs/guide.md, "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"tinydistill": ROOT / "src" / "tinydistill", "data_aug": ROOT / "data_aug"}

#: The floors, lowest first. A module may import from its own floor and the floors below, never from above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("tinydistill", "tinydistill.errors", "tinydistill.atomic", "tinydistill.paths",
                    "tinydistill.hashing", "tinydistill.hardware", "tinydistill.offline", "tinydistill.progress",
                    "tinydistill.resume", "tinydistill.timing", "tinydistill.run_config", "tinydistill.ckpt_path",
                    "tinydistill.records")),
    ("data", ("tinydistill.data", "tinydistill.metrics", "tinydistill.baselines")),
    ("models", ("tinydistill.models", "tinydistill.losses")),
    ("distillation", ("tinydistill.distill",)),
    ("training", ("tinydistill.optim", "tinydistill.trainer", "tinydistill.callbacks", "tinydistill.modules",
                  "tinydistill.contract")),
    ("augmentation", ("data_aug",)),
    ("checks", ("tinydistill.teacher_checks", "tinydistill.preflight")),
    ("stages", ("tinydistill.stages",)),
    ("tools", ("tinydistill.inference", "tinydistill.bench", "tinydistill.export", "tinydistill.predict",
               "tinydistill.frontier", "tinydistill.report", "tinydistill.results", "tinydistill.onnx_graph",
               "tinydistill.backends", "tinydistill.serve")),
]

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Functions that are pure tables (a mapping written out), exempt from the function size.
TABLES: set[str] = set()
#: The only functions that may take the whole composed config: a stage's door (its plan and declarations), the
#: typed `from_config` constructors, the pre-run checks and the runner, and the command-line entry points.
DOOR_FUNCTIONS = {"plan", "models", "result_dir", "from_config", "from_stage", "run_name", "teacher_dir", "student_source",
                  "check_switches", "check_resume", "main"}
DOOR_MODULES = {"tinydistill.preflight", "tinydistill.run_config", "tinydistill.stages", "tinydistill.contract",
                "data_aug.__main__", "data_aug.quality"}


def modules(sources: dict[str, Path] = SOURCES) -> dict[str, Path]:
    out = {}
    for package, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = (package, *path.relative_to(folder).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `name` imports, at the top or inside a function."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import module` imports that module; `from module import name`, the module
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for candidate in candidates:
            # `import tinydistill.data.glue` names a module; `from tinydistill.data import files` a submodule
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                out.add(candidate)
    return out


def layer(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # the bare package matches only itself: a module missing from LAYERS must fail, not land on the ground floor
            if name == prefix or (prefix != "tinydistill" and name.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{name} has no floor in tests/test_architecture.py LAYERS"
    return best[0]


def import_graph(sources: dict[str, Path] = SOURCES) -> dict[str, set[str]]:
    known = modules(sources)
    return {name: imports(name, path, known) for name, path in known.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
            for a, targets in sorted(graph.items()) for b in sorted(targets) if layer(b) > layer(a)]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any component of two or more modules is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_or_across():
    found = upward_imports(import_graph())
    assert not found, "\n".join(found)


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, found


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path):
    """The two rules above can fail: a data module importing a stage (inside a function, too), and modules
    importing each other."""
    pkg = tmp_path / "tinydistill"
    (pkg / "data").mkdir(parents=True)
    (pkg / "stages").mkdir()
    for init in (pkg, pkg / "data", pkg / "stages"):
        (init / "__init__.py").write_text("")
    (pkg / "data" / "glue.py").write_text("def f():\n    from tinydistill.stages import task\n")
    (pkg / "stages" / "task.py").write_text("from tinydistill.data import glue\nfrom . import general\n")
    (pkg / "stages" / "general.py").write_text("import tinydistill.stages.task\n")
    graph = import_graph({"tinydistill": pkg})
    assert graph["tinydistill.data.glue"] == {"tinydistill.stages.task"}
    assert upward_imports(graph) == ["tinydistill.data.glue (data) imports tinydistill.stages.task (stages)"]
    assert circles(graph) == [["tinydistill.data.glue", "tinydistill.stages.general", "tinydistill.stages.task"]]


def test_modules_and_functions_are_a_readable_size():
    long_modules, long_functions = [], []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            long_modules.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in TABLES:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {size} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_task_distillation_run_fits_one_screen():
    from tinydistill.stages import task

    tree = ast.parse((SOURCES["tinydistill"] / "stages" / "task" / "__init__.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert run.end_lineno - run.lineno + 1 < 50
    assert callable(task.run)


def test_below_a_stages_door_no_function_takes_the_whole_config():
    """A parameter typed DictConfig (the composed config) only at a stage's door; everything below gets a plan."""
    offenders = []
    for name, path in modules().items():
        if name in DOOR_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in DOOR_FUNCTIONS:
                continue
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                if arg.annotation is not None and "DictConfig" in ast.unparse(arg.annotation):
                    offenders.append(f"{name}.{node.name}({arg.arg})")
    assert not offenders, offenders


def test_every_stage_keeps_the_contract():
    import importlib

    from tinydistill.stages import GENERAL_METHODS, STAGES

    for name in {*STAGES, *GENERAL_METHODS.values()}:
        stage = importlib.import_module(f"tinydistill.stages.{name}")
        for attr in ("NAME", "LEARNING_RATES", "SEQUENCE_LENGTH", "READS", "models", "result_dir", "plan", "run"):
            assert hasattr(stage, attr), f"tinydistill.stages.{name} lacks {attr}"
