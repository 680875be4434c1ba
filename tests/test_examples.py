"""The examples users copy, executed as written.

- every ```python block of README.md;
- every ``Example::`` block (a paragraph starting with "Example" and ending in
  ``::``, then its indented code) in the docstrings of the public modules,
  classes, functions and methods of ``hrm_agent`` and ``envs``; ``>>>``
  doctests there too, should any appear.

Each example runs in a fresh namespace (so it must import what it uses, as a
user pasting it would) and a fresh empty working directory. Only the budgets
are cut, by the ``shrunk_budget`` fixture: ``HRMAgent.learn(n)`` trains
``min(n, STEP_CAP)`` env steps, stable-baselines3's ``evaluate_policy`` runs
at most ``EPISODE_CAP`` episodes, and an agent built from a dict config (or
none) gets ``EXAMPLE_CONFIG`` (a tiny model, small DQN settings, evaluation
and checkpoints every 100 steps) *under* the example's own values, which
win. ``runs/<run>`` in an example stands for a training run with a
``latents.npz``; a tiny one is trained once per session. Tracebacks point at
the example's own line in README.md or the source file.

Also here: the two snippets of the report that ``learn`` without a
``run_dir`` crashed at its first periodic checkpoint, at the same cut budget.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path

import pytest

from hrm_agent import AgentConfig, HRMAgent

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGES = ("hrm_agent", "envs")
RUN_PLACEHOLDER = "runs/<run>"

STEP_CAP = 200  # env steps an example's learn() may run
EPISODE_CAP = 5  # episodes an example's evaluate_policy() may run
EXAMPLE_CONFIG = {  # under an example's own dict config; the example's keys win
    "model": TINY_MODEL,
    "n_envs": 2,
    "buffer_size": 2_000,
    "learning_starts": 64,
    "batch_size": 16,
    "train_freq": 4,
    "target_update_interval": 100,
    "eval_freq": 100,  # periodic evaluation and checkpoints happen within STEP_CAP
    "eval_episodes": 3,
    "checkpoint_freq": 100,
    "compile": False,
}


# ------------------------------------------------------------------ finding the examples


def readme_python_blocks() -> list[tuple[int, str]]:
    """``(first code line, code)`` of every ```python block of README.md."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start(1)) + 1, m.group(1))
        for m in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.M | re.S)
    ]


def example_blocks(doc: str) -> list[tuple[int, str]]:
    """``(index of the header line, dedented code)`` of each ``Example...::`` block of a docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("Example"):
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i  # the header may run over several lines of its paragraph
        while j < len(lines) and lines[j].strip() and not lines[j].rstrip().endswith("::"):
            j += 1
        if j == len(lines) or not lines[j].strip():
            i = j  # prose starting with "Example", not a literal block
            continue
        k = j + 1
        while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > indent):
            k += 1
        code = textwrap.dedent("\n".join(lines[j + 1 : k])).strip("\n")
        if code:
            blocks.append((i, code))
        i = k
    return blocks


def public_modules() -> list:
    modules = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        modules.append(root)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):  # skips __main__ and private modules
                modules.append(importlib.import_module(info.name))
    return modules


def documented_objects(module) -> list[tuple[str, object]]:
    """The module and its public classes, functions and methods (those defined in it)."""
    found = [(module.__name__, module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        found.append((f"{module.__name__}.{name}", obj))
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                member = getattr(member, "__func__", getattr(member, "fget", member))
                if not attr.startswith("_") and inspect.isfunction(member):
                    found.append((f"{module.__name__}.{name}.{attr}", member))
    return found


def source_line(obj: object, code: str) -> tuple[str, int]:
    """Source file and 1-based line of ``code``'s first line in ``obj``'s docstring (for tracebacks)."""
    module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    path = Path(inspect.getsourcefile(module))
    lines = path.read_text().splitlines()
    start = 0 if inspect.ismodule(obj) else inspect.getsourcelines(obj)[1] - 1
    first = code.splitlines()[0].strip()
    for n in range(start, len(lines)):
        if lines[n].strip() == first:
            return str(path), n + 1
    return str(path), 1


def docstring_examples() -> list:
    examples = []
    for module in public_modules():
        for qualname, obj in documented_objects(module):
            for n, (_, code) in enumerate(example_blocks(inspect.getdoc(obj) or "")):
                filename, line = source_line(obj, code)
                examples.append(pytest.param(filename, line, code, id=qualname + (f"[{n}]" if n else "")))
    return examples


DOCSTRING_EXAMPLES = docstring_examples()


# ------------------------------------------------------------------ running them


@pytest.fixture
def shrunk_budget(monkeypatch):
    """``HRMAgent.learn`` runs at most STEP_CAP steps, ``evaluate_policy`` at most EPISODE_CAP episodes;
    dict configs get EXAMPLE_CONFIG underneath."""
    from stable_baselines3.common import evaluation

    init, learn, evaluate_policy = HRMAgent.__init__, HRMAgent.learn, evaluation.evaluate_policy

    @functools.wraps(init)
    def small_init(self, env, config=None, *args, **kwargs):
        if not isinstance(config, AgentConfig):  # an AgentConfig (e.g. from a saved model) is used as is
            own = dict(config or {})
            config = {**EXAMPLE_CONFIG, **own, "model": {**EXAMPLE_CONFIG["model"], **own.get("model", {})}}
        init(self, env, config, *args, **kwargs)

    @functools.wraps(learn)
    def short_learn(self, total_timesteps, *args, **kwargs):
        return learn(self, min(total_timesteps, STEP_CAP), *args, **kwargs)

    @functools.wraps(evaluate_policy)
    def short_evaluate_policy(model, env, n_eval_episodes=10, *args, **kwargs):
        return evaluate_policy(model, env, min(n_eval_episodes, EPISODE_CAP), *args, **kwargs)

    monkeypatch.setattr(HRMAgent, "__init__", small_init)
    monkeypatch.setattr(HRMAgent, "learn", short_learn)
    monkeypatch.setattr(evaluation, "evaluate_policy", short_evaluate_policy)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny DynamicMaze-v0 run directory with ``final_model.pt`` and ``latents.npz``."""
    from hrm_agent import latents
    from hrm_agent.evaluate import evaluate

    run_dir = tmp_path_factory.mktemp("runs") / "DynamicMaze-v0__carry__0__tiny"
    agent = HRMAgent("DynamicMaze-v0", {**EXAMPLE_CONFIG, "eval_freq": 0}, seed=0, run_dir=run_dir)
    agent.learn(STEP_CAP)
    latents.save(run_dir / "latents.npz", evaluate(agent, 3, seed=2_000_000, record_latents=True).latents)
    return run_dir


def run_example(code: str, filename: str, line: int, request) -> dict:
    """Execute ``code`` as lines ``line...`` of ``filename``, in a fresh namespace; returns the namespace."""
    if RUN_PLACEHOLDER in code:
        code = code.replace(RUN_PLACEHOLDER, str(request.getfixturevalue("trained_run")))
    namespace = {"__name__": "__example__"}
    exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    "line, code", [pytest.param(line, code, id=f"README.md:{line}") for line, code in readme_python_blocks()]
)
def test_readme_python_example(line, code, request, tmp_path, monkeypatch, shrunk_budget):
    monkeypatch.chdir(tmp_path)
    run_example(code, str(README), line, request)


@pytest.mark.parametrize("filename, line, code", DOCSTRING_EXAMPLES)
def test_docstring_example(filename, line, code, request, tmp_path, monkeypatch, shrunk_budget):
    monkeypatch.chdir(tmp_path)
    run_example(code, filename, line, request)


def test_docstring_doctests(tmp_path, monkeypatch, shrunk_budget):
    """``>>>`` examples, should any docstring have them (none does yet), run with doctest."""
    monkeypatch.chdir(tmp_path)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for module in public_modules():
        for test in finder.find(module):
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} doctest example(s) failed (see the captured output)"


def test_the_examples_are_found():
    """The finder sees the README's example and the documented APIs' examples (it cannot go blind silently)."""
    assert readme_python_blocks()
    ids = {p.id for p in DOCSTRING_EXAMPLES}
    expected = {"hrm_agent.agent.HRMAgent", "hrm_agent.model.HRMQNetwork", "hrm_agent.latents.load",
                "hrm_agent.recording.LatentRecorder", "hrm_agent.recording.ForwardRecorder"}
    assert expected <= ids, expected - ids


def test_example_blocks_parse_multiline_headers_and_skip_prose():
    doc = '''Summary.

    Example (a header over
    two lines)::

        x = 1

        y = x + 1
    After the block.

    Example prose that is no block.
    '''
    assert example_blocks(doc) == [(2, "x = 1\n\ny = x + 1")]


# ------------------------------------------------------------------ the reported snippets


def test_snippet_with_a_checkpoint_freq_and_no_run_dir_finishes(tmp_path, monkeypatch, shrunk_budget):
    """It raised "save_checkpoint needs a path when the agent has no run_dir" at step 200."""
    monkeypatch.chdir(tmp_path)
    agent = HRMAgent("FourRooms-v0", {"checkpoint_freq": 200, "learning_starts": 50, "eval_freq": 0}, seed=1)
    agent.learn(400)  # cut to STEP_CAP = 200: still reaches the first periodic checkpoint, where it crashed
    assert agent.num_timesteps == STEP_CAP == 200 and agent.n_updates > 0 and agent.eval_history == []
    assert list(tmp_path.iterdir()) == []


def test_docstring_snippet_finishes_at_a_cut_budget(tmp_path, monkeypatch, shrunk_budget):
    monkeypatch.chdir(tmp_path)
    agent = HRMAgent("DynamicMaze-v0", {"carry_z": True}, seed=1)
    agent.learn(50_000)
    assert agent.num_timesteps == STEP_CAP  # past checkpoint_freq and eval_freq (100 each)
    assert [e["step"] for e in agent.eval_history] == [100, 200]
    assert list(tmp_path.iterdir()) == []
