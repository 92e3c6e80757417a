"""The daemon's config file: strict validation with file, line and key; every problem at
once; ${VAR} secrets; inheritance defaults → group → target → URL options."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tlswatch.cli import _register, app
from tlswatch.daemon.config import ConfigProblems, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tlswatch.yaml"

# (name, file content, expected problems as "line: key: message")
INVALID = [
    ("unknown-top-key", "targets: [tls://a.example:1]\nbogus: 1\n", ["2: bogus: unknown key"]),
    (
        "unknown-default",
        "defaults:\n  intervall: 1h\ntargets: [tls://a.example:1]\n",
        ["2: defaults.intervall: unknown key"],
    ),
    (
        "bad-duration",
        "defaults:\n  interval: 6x\ntargets: [tls://a.example:1]\n",
        ["2: defaults.interval: '6x' is not a duration; use e.g. 30s, 15m, 6h, 1d"],
    ),
    (
        "bad-threshold",
        "targets:\n  - url: tls://a.example:1\n    warn: soon\n",
        ["3: targets[0].warn: 'soon' is not a threshold; use days (30d) or a percentage (33%)"],
    ),
    ("no-targets", "defaults: {}\n", ["1: targets: required key is missing"]),
    ("empty-file", "", ["the file is empty; at least one target is required"]),
    (
        "bad-scheme",
        "targets:\n  - gopher://a.example\n",
        ["2: targets[0].url: gopher://a.example: unknown scheme 'gopher'"],
    ),
    (
        "undefined-group",
        "targets:\n  - url: tls://a.example:1\n    group: mail\n",
        ["3: targets[0].group: group 'mail' is not defined under groups"],
    ),
    (
        "undefined-channel",
        "targets: [tls://a.example:1]\nnotify: {a: 'json://127.0.0.1:9/x'}\nroutes:\n  - notify: [b]\n",
        ["4: routes[0].notify[0]: channel 'b' is not defined under notify"],
    ),
    (
        "missing-env",
        "targets: [tls://a.example:1]\nnotify:\n  a: 'json://127.0.0.1:9/${TLSWATCH_TEST_UNSET}'\n",
        ["3: notify.a: environment variable TLSWATCH_TEST_UNSET is not set"],
    ),
    (
        "duplicate-key",
        "targets: [tls://a.example:1]\ntargets: [tls://b.example:1]\n",
        ["2: targets: duplicate key 'targets'"],
    ),
    (
        "duplicate-target",
        "targets:\n  - tls://a.example:1\n  - tls://a.example:1\n",
        ["3: targets[1]: target 'tls://a.example:1' is already listed (targets[0])"],
    ),
    (
        "silence-needs-one",
        "targets: [tls://a.example:1]\nsilences:\n  - match: {}\n    until: 2030-01-01T00:00:00Z\n",
        ["3: silences[0].match: give exactly one of target or fingerprint"],
    ),
    (
        "bad-store",
        "store: mysql://x/y\ntargets: [tls://a.example:1]\n",
        [
            "1: store: store must be sqlite:///PATH (relative to this file) or postgresql://USER@HOST/DB"
        ],
    ),
    ("yaml-syntax", "targets: [tls://a.example:1\n", ["YAML syntax error"]),
    (
        "bad-severity",
        "targets: [tls://a.example:1]\nnotify: {a: 'json://127.0.0.1:9/x'}\nroutes:\n  - match: {severity: loud}\n    notify: [a]\n",
        ["4: routes[0].match.severity: Input should be 'info', 'warning' or 'critical'"],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_configs_name_file_line_and_key(
    tmp_path: Path, name: str, text: str, expected: list[str]
) -> None:
    """Each invalid file is rejected with exactly the expected problems, each naming the
    file, the line and the key."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigProblems) as info:
        load_config(path)
    got = [str(p) for p in info.value.problems]
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(f"{path}:"), line
        assert want in line, (want, line)


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    """`tlswatch config check` lists every problem of a file (here four, on four lines)
    and exits 2; a valid file exits 0."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "defaults:\n  interval: 0s\n  jitter: 2\ntargets:\n  - tls://a.example:1\n  - url: nope://x\nextra: 1\n"
    )
    _register()
    res = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{bad}:")]
    assert [ln.split(":")[1] for ln in lines[:-1]] == ["2", "3", "6", "7"]
    assert lines[-1] == f"{bad}: 4 problem(s)"
    res = CliRunner().invoke(app, ["config", "check", str(EXAMPLE)])
    assert res.exit_code == 0, res.output
    assert res.stdout == f"{EXAMPLE}: ok (4 target(s), 1 channel(s))\n"


def test_example_config_and_inheritance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped example loads; its SQLite store is next to it; a target inherits from
    its group and the defaults; URL options win over everything."""
    cfg = load_config(EXAMPLE)
    assert cfg.store_url == f"sqlite:///{EXAMPLE.parent / 'tlswatch.db'}"
    smtp = next(t for t in cfg.targets if t.name == "local-smtp")
    assert smtp.interval == dt.timedelta(minutes=30)
    assert smtp.owner == "mail-team" and dict(smtp.labels) == {"tier": "dev"}
    assert cfg.notify["local-hook"] == "json://127.0.0.1:8099/tlswatch"

    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    path = tmp_path / "t.yaml"
    path.write_text(
        "store: postgresql://tw@127.0.0.1/tw\n"
        "defaults: {warn: 40d, timeout: 5s}\n"
        "groups: {g: {crit: 10d, owner: team}}\n"
        "targets:\n"
        "  - url: tls://a.example:1?warn=50d\n    group: g\n    timeout: 3s\n"
        "notify: {h: 'json://127.0.0.1:9/x?token=${HOOK_TOKEN}'}\n"
    )
    cfg = load_config(path)
    (t,) = cfg.targets
    opts = dict(t.target.options)
    assert (opts["warn"], opts["crit"], opts["timeout"]) == ("50d", "10d", "3")
    assert t.owner == "team"
    assert cfg.store_url == "postgresql+psycopg://tw@127.0.0.1/tw"
    assert cfg.notify["h"] == "json://127.0.0.1:9/x?token=s3cret"
