"""The command line as a package (``ehead_cli/cli/``): each command module stays a few lines that parse,
validate and call the library; every option several commands share is defined once (cli/options.py);
the flags a family or stage does not take are tables, each excluded flag refused with its one-line
error; ``ehead serve`` takes --flame and hands it, with --device, to the avatar it loads."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import typer

from ehead_cli.assets import ASSETS
from ehead_cli.cli import app, main
from ehead_cli.cli.bench import BENCH_FLAGS
from ehead_cli.cli.flags import Excluded, Options, allowed
from ehead_cli.cli.generate import GENERATE_FLAGS
from ehead_cli.cli.train import TRAIN_FLAGS
from tests.conftest import REPO, ehead_main

CLI = REPO / "ehead_cli" / "cli"
COMMAND_MODULES = ("info", "train", "generate", "render", "export", "eval", "prepare", "bench", "serve", "avatar")
MAX_BODY_LINES = 40


def _commands() -> dict:
    group = typer.main.get_command(app)
    commands = dict(group.commands)
    commands["avatar fit"] = commands.pop("avatar").commands["fit"]
    return commands


def _body_lines(fn: ast.FunctionDef) -> int:
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_every_command_has_its_own_module_and_every_body_is_a_few_lines():
    assert {p.stem for p in CLI.glob("*.py")} >= set(COMMAND_MODULES)
    assert set(_commands()) == {*COMMAND_MODULES[:-1], "avatar fit"}
    long = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and _body_lines(node) > MAX_BODY_LINES:
                long.append(f"{path.name}:{node.name} ({_body_lines(node)} lines)")
    assert not long, long
    assert not (REPO / "ehead_cli" / "cli.py").exists()


# a phrase only the shared definition's help has (in the source: the variable's name or its ASSETS key):
# a second typer.Option carrying one is a copy
SHARED_HELP = {"--device": ("cuda:N",), "--threads": ("EHEAD_THREADS",), "--family": ("Model family",),
               "--steps": ("sampling steps",), "--size": ("square, even",),
               **{a.flag: (f"(or {a.env})", f"_env('{a.key}')") for a in ASSETS.values()
                  if a.key in ("flame", "flame_landmarks", "emoca", "vgg", "lpips", "speechtokenizer", "hubert")}}


def test_each_shared_option_is_defined_once():
    where: dict[str, list[str]] = {flag: [] for flag in SHARED_HELP}
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "typer.Option":
                text = ast.unparse(node)
                for flag, phrases in SHARED_HELP.items():
                    if any(phrase in text for phrase in phrases):
                        where[flag].append(f"{path.name}:{node.lineno}")
    assert all(len(v) == 1 and v[0].startswith("options.py") for v in where.values()), where
    assert "cpu or cuda" not in "".join(p.read_text() for p in CLI.glob("*.py") if p.name != "options.py")


@pytest.mark.parametrize("flag", ["--device", "--threads", "--family", "--emoca", "--speech-tokenizer",
                                  "--flame-landmarks", "--flame", "--vgg", "--lpips", "--steps", "--size",
                                  "--audio-encoder", "--checkpoint"])
def test_a_shared_option_has_one_type_and_one_help_wherever_it_is_taken(flag):
    seen = {}
    for name, command in _commands().items():
        for p in command.params:
            if flag in p.opts and (flag not in SHARED_HELP or any(x in (p.help or "") for x in SHARED_HELP[flag])):
                seen[name] = p
    assert len(seen) >= 2, f"{flag}: shared by {sorted(seen)}"
    types = {n: p.type_descriptor.annotation for n, p in seen.items()}
    assert len(set(types.values())) == 1, types
    if flag == "--checkpoint":
        seen = {n: p for n, p in seen.items() if n != "bench"}  # bench's: a listener's only
    if flag not in ("--flame", "--vgg", "--lpips", "--checkpoint"):  # one input, each command's own use of it
        assert len({p.help for p in seen.values()}) == 1, {n: p.help for n, p in seen.items()}
    if flag == "--device":
        assert set(seen) == {"train", "generate", "render", "eval", "bench", "serve", "avatar fit"}
    if flag == "--flame":
        assert set(seen) == {"train", "generate", "render", "export", "eval", "prepare", "serve", "avatar fit"}


def test_every_option_of_every_command_says_what_it_is_for():
    missing = [f"ehead {n} {p.opts[0]}" for n, c in _commands().items() for p in c.params
               if isinstance(p, typer.core.TyperOption) and len(p.help or "") < 10]
    assert not missing, missing


def test_each_avatar_meaning_has_its_own_help():
    helps = {n: p.help for n, c in _commands().items() for p in c.params if "--avatar" in p.opts}
    assert set(helps) == {"train", "generate", "render", "bench", "serve"}
    assert len(set(helps.values())) == 5
    assert "avatar folder" in helps["serve"] and "builtin" in helps["train"]


@pytest.mark.parametrize("value, ok", [("cpu", True), ("cuda", True), ("cuda:1", True), ("tpu", False),
                                       ("cuda:", False), ("cuda:x", False), ("gpu", False)])
def test_device_is_checked_before_any_work(capsys, value, ok):
    code = ehead_main("render", "missing.npz", "--device", value)
    err = capsys.readouterr().err
    if ok:
        assert "--device must be" not in err
    else:
        assert code == 2 and err == f"error: --device must be cpu or cuda (cuda:N for one GPU), got {value!r}\n"


def _resume_run(tmp_path: Path, record: dict) -> str:
    from ehead_cli.train.state import _SCALARS, STATE_DIR

    run = tmp_path / "run"
    (run / STATE_DIR).mkdir(parents=True)
    (run / STATE_DIR / _SCALARS).write_text(json.dumps({"record": record}))
    return str(run)


# the command line that reaches each scope of each table (the resumed runs' folders made by _resume_run)
SCOPES = {
    "train": (TRAIN_FLAGS, {
        "listener": ["train", "--family", "listener", "--stage", "vq", "--data", "d", "--out", "o"],
        "listener resume": ["train", "--resume", {"family": "listener", "stage": "vq"}],
        "listener vq": ["train", "--family", "listener", "--stage", "vq", "--data", "d", "--out", "o"],
        "listener tokens": ["train", "--family", "listener", "--stage", "tokens", "--data", "d", "--out", "o"],
        "listener lm": ["train", "--family", "listener", "--stage", "lm", "--data", "d", "--out", "o"],
        "embodiedhead": ["train", "--data", "d", "--out", "o"],
        "embodiedhead 1": ["train", "--data", "d", "--out", "o"],
        "embodiedhead 2": ["train", "--stage", "2", "--data", "d", "--out", "o"],
        "embodiedhead 2 resume": ["train", "--resume", {"stage": 2}],
    }),
    "generate": (GENERATE_FLAGS, {"listener": ["generate", "--family", "listener"], "embodiedhead": ["generate"]}),
    "bench": (BENCH_FLAGS, {
        "listener": ["bench", "--family", "listener"],
        "embodiedhead": ["bench", "--fps"],
        "embodiedhead stage2": ["bench", "--stage2"],
        "embodiedhead stage2 avatar": ["bench", "--stage2", "--avatar", "av"],
        "embodiedhead fps": ["bench", "--fps"],
    }),
}
CASES = [(command, scope, group, name) for command, (table, scopes) in SCOPES.items() for scope in scopes
         for group in table[scope] for name in group.flags]


def test_every_scope_of_every_table_is_reached():
    for command, (table, scopes) in SCOPES.items():
        assert set(scopes) == set(table), command
        params = {p.name for p in _commands()[command].params}
        for scope in table:
            assert {n for g in table[scope] for n in g.flags} <= params, (command, scope)
            assert allowed(params, table, scope) < params or not table[scope]


def _args_for(param) -> list[str]:
    flag = param.opts[0]
    if getattr(param, "is_flag", False):
        return [flag]
    if param.nargs == 2:
        return [flag, "0.5", "0.5"]
    if param.name == "size":
        return [flag, "64"]
    return [flag, {int: "2", float: "0.5"}.get(param.type_descriptor.annotation, "x")]


@pytest.mark.parametrize("command, scope, group, name", CASES,
                         ids=[f"{c}[{s}]-{n}" for c, s, _, n in CASES])
def test_a_flag_the_scope_excludes_is_one_line_naming_it(tmp_path, monkeypatch, capsys, command, scope, group,
                                                         name):
    monkeypatch.chdir(tmp_path)
    param = next(p for p in _commands()[command].params if p.name == name)
    base = [_resume_run(tmp_path, a) if isinstance(a, dict) else a for a in SCOPES[command][1][scope]]
    code = ehead_main(*base, *_args_for(param))
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {param.opts[0]} {group.why}\n", err


def test_options_refuse_names_the_first_given_flag_of_the_first_group():
    table = {"a": (Excluded(("x", "y"), "applies to b"), Excluded(("z",), "applies to c")), "b": ()}
    o = Options({"x": 1, "y": 2, "z": 3}, {"y": "--y", "z": "--z"})
    assert o.y == 2 and o.gave("z") and not o.gave("x")
    o.refuse(table, "b")
    with pytest.raises(Exception, match=r"^--y applies to b$"):
        o.refuse(table, "b", "a")
    with pytest.raises(AttributeError):
        o.missing  # noqa: B018
    assert allowed(["x", "y", "z", "w"], table, "a") == {"w"}


def test_serve_takes_flame_and_loads_the_avatar_with_it_on_the_device(tmp_path, monkeypatch, capsys,
                                                                      tiny_checkpoint):
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.errors import InputError

    asked = {}

    def load(path, device="cpu", flame=None):
        asked.update(path=Path(path), device=str(device), flame=flame)
        raise InputError("stop before serving")

    monkeypatch.setattr(Avatar, "load", staticmethod(load))
    (tmp_path / "av").mkdir()
    code = ehead_main("serve", "--checkpoint", str(tiny_checkpoint), "--avatar", str(tmp_path / "av"),
                      "--flame", str(tmp_path / "flame.pkl"), "--device", "cpu", "--threads", "1")
    assert code == 2 and "stop before serving" in capsys.readouterr().err
    assert asked == {"path": tmp_path / "av", "device": "cpu", "flame": str(tmp_path / "flame.pkl")}


def test_the_package_keeps_its_entry_points():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ehead"] == "ehead_cli.cli:main" and callable(main)
    assert "from ehead_cli.cli import main" in (REPO / "ehead_cli" / "__main__.py").read_text()
