"""``deskside check``: the mistakes users make in a config, caught before an agent sees a blank
sidebar. Run in-process against real SQLite files, the real PostgreSQL and a silent server."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from deskside.cli import app

runner = CliRunner()

SOURCES = """\
[sources.app]
kind = "sql"
url = "sqlite:///{database}"
query = "select name, company from users where lower(email) in :emails"

[sources.crm]
kind = "sql"
url = "sqlite:///{database}"
query = "select note from notes where email = :email"
"""


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """An SQLite file with the tables :data:`SOURCES` reads."""
    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("create table users (email text, name text, company text)")
        connection.execute("insert into users values ('ann@acme.example', 'Ann', 'Acme')")
        connection.execute("create table notes (email text, note text)")
    return path


def write_config(tmp_path: Path, database: Path, rest: str, *, sources: str = SOURCES) -> Path:
    path = tmp_path / "deskside.toml"
    path.write_text(sources.format(database=database) + rest, encoding="utf-8")
    return path


def line_of(path: Path, text: str, occurrence: int = 1) -> int:
    """The line number of the ``occurrence``-th line of ``path`` that starts with ``text``."""
    numbers = [
        number
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.startswith(text)
    ]
    return numbers[occurrence - 1]


def check(config: Path, *options: str) -> Result:
    return runner.invoke(app, ["check", "-c", str(config), *options])


def one_line(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


# ── Names in expressions and templates ──────────────────────────────────────────────────────


def test_a_misspelled_source_in_a_field_is_refused_with_file_line_and_a_suggestion(
    tmp_path: Path, database: Path
) -> None:
    config = write_config(
        tmp_path,
        database,
        '\n[card]\ntitle = "{{ app.company }}"\n'
        '\n[[card.fields]]\nlabel = "Name"\nvalue = "app.name"\n'
        '\n[[card.fields]]\nlabel = "Plan"\nvalue = "app.plan"\n'
        '\n[[card.fields]]\nlabel = "Note"\nvalue = "crn.note"\n',
    )
    line = line_of(config, 'value = "crn.note"')
    for command in ("check", "serve"):
        result = runner.invoke(app, [command, "-c", str(config)])
        assert result.exit_code == 2, result.output
        output = one_line(result.stderr)
        assert f"{config}:{line}: card.fields[2].value:" in output, output
        assert "did you mean `crm`?" in output


def test_a_misspelled_source_in_a_template_is_refused(tmp_path: Path, database: Path) -> None:
    config = write_config(
        tmp_path, database, '\n[card]\nsubtitle = "{{ ap.name }} at {{ app.company }}"\n'
    )
    result = check(config)
    assert result.exit_code == 2, result.output
    output = one_line(result.stderr)
    assert f"{config}:{line_of(config, 'subtitle')}: card.subtitle:" in output
    assert "`ap`" in output and "did you mean `app`?" in output


@pytest.mark.parametrize(
    ("table", "key", "wrong", "suggested"),
    [
        ('[[card.badges]]\ntext = "VIP"\nwhen = "apq.vip"\n', "card.badges[0].when", "apq", "app"),
        (
            '[[card.links]]\nlabel = "{{ crm.note }}"\nurl = "https://x.example/{{ cmr.id }}"\n',
            "card.links[0].url",
            "cmr",
            "crm",
        ),
        (
            '[[card.sections]]\ntitle = "CRM"\nwhen = "crm"\n'
            '[[card.sections.fields]]\nlabel = "A"\nvalue = "crm.note"\n'
            '[[card.sections.fields]]\nlabel = "B"\ntemplate = "{{ crm.note }} {{ nots }}"\n',
            "card.sections[0].fields[1].template",
            "nots",
            None,
        ),
        (
            '[[card.sections]]\ntitle = "{{ emial }}"\n',
            "card.sections[0].title",
            "emial",
            "email",
        ),
        (
            '[helpdesks.helper]\nsecret = "s3cret"\nvalue = "biling.mrr_cents or app.mrr"\n',
            "helpdesks.helper.value",
            "biling",
            None,
        ),
        (
            '[helpdesks.helper]\nsecret = "s3cret"\nname = "{{ ap.name }}"\n',
            "helpdesks.helper.name",
            "ap",
            "app",
        ),
        (
            '[[card.fields]]\nlabel = "Accounts"\nvalue = "records.ap | length"\n',
            "card.fields[0].value",
            "records.ap",
            "records.app",
        ),
    ],
)
def test_every_expression_and_template_is_checked(
    tmp_path: Path,
    database: Path,
    table: str,
    key: str,
    wrong: str,
    suggested: str | None,
) -> None:
    config = write_config(tmp_path, database, "\n" + table)
    result = check(config)
    assert result.exit_code == 2, result.output
    output = one_line(result.stderr)
    assert f"{key}:" in output, output
    assert f"`{wrong}`" in output
    if suggested:
        assert f"did you mean `{suggested}`?" in output
    else:  # nothing close: the names that exist are listed instead
        assert "app, crm" in output


def test_built_in_names_and_jinja_globals_are_known(tmp_path: Path, database: Path) -> None:
    config = write_config(
        tmp_path,
        database,
        '\n[card]\ntitle = "{{ app.company or email }}"\n'
        "subtitle = \"{{ emails | join(', ') }} via {{ helpdesk.desk }}\"\n"
        '\n[[card.fields]]\nlabel = "Accounts"\nvalue = "records.app | length"\n'
        '\n[[card.fields]]\nlabel = "Seen"\nvalue = "now - today if now else none"\n'
        '\n[[card.fields]]\nlabel = "List"\ntype = "markdown"\n'
        "template = \"{% for row in records['crm'] %}{{ loop.index }}. {{ row.note }} "
        '{% endfor %}{% set shown = range(3) | list %}{{ shown | length }}"\n'
        '\n[[card.fields]]\nlabel = "Pairs"\n'
        "value = \"dict(a=1) | list if cycler and joiner and namespace and lipsum else ''\"\n",
    )
    result = check(config)
    assert result.exit_code == 0, result.output


# ── Plain card sections ─────────────────────────────────────────────────────────────────────


def test_a_plain_card_naming_a_missing_section_is_refused(tmp_path: Path, database: Path) -> None:
    config = write_config(
        tmp_path,
        database,
        '\n[[card.sections]]\ntitle = "Billing"\n'
        '[[card.sections.fields]]\nlabel = "Company"\nvalue = "app.company"\n'
        '\n[helpdesks.plain]\nsecret = "s3cret"\n'
        '[helpdesks.plain.cards.billing]\nmain = false\nsections = ["Billing", "Biling"]\n',
    )
    result = check(config)
    assert result.exit_code == 2, result.output
    output = one_line(result.stderr)
    line = line_of(config, "sections = ")
    assert f"{config}:{line}: helpdesks.plain.cards.billing.sections[1]:" in output, output
    assert "did you mean `Billing`?" in output


def test_a_plain_card_may_name_a_templated_section(tmp_path: Path, database: Path) -> None:
    config = write_config(
        tmp_path,
        database,
        '\n[[card.sections]]\ntitle = "{{ app.company }}"\n'
        '[[card.sections.fields]]\nlabel = "Name"\nvalue = "app.name"\n'
        '\n[helpdesks.plain]\nsecret = "s3cret"\n'
        '[helpdesks.plain.cards.company]\nsections = ["Acme"]\n',
    )
    assert check(config).exit_code == 0


# ── Sources, for real ───────────────────────────────────────────────────────────────────────


def test_a_valid_config_passes_without_an_email(tmp_path: Path, database: Path) -> None:
    result = check(write_config(tmp_path, database, ""))
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("select nme from users where lower(email) in :emails", "no such column: nme"),
        ("select * from user where lower(email) in :emails", "no such table: user"),
        ("selec name from users where email = :email", 'near "selec": syntax error'),
    ],
)
def test_every_query_runs_without_an_email(
    tmp_path: Path, database: Path, query: str, message: str
) -> None:
    sources = SOURCES.replace(
        "select name, company from users where lower(email) in :emails", query
    )
    config = write_config(tmp_path, database, "", sources=sources)
    result = check(config)
    assert result.exit_code == 2, result.output  # the config's query is at fault
    output = one_line(result.stdout)
    assert f"{config}:{line_of(config, 'query')}: sources.app.query:" in output, output
    assert message in output
    assert "check@deskside.invalid" not in result.output  # bound values are never printed


@pytest.mark.postgres
def test_queries_run_on_postgresql_with_every_address_bound(
    tmp_path: Path, postgres_url: str
) -> None:
    good = "select relname from pg_class where relname in :emails or relname = :email"
    broken = "select no_such_column from pg_class where relname in :emails"
    config = tmp_path / "deskside.toml"
    config.write_text(
        f'[sources.good]\nkind = "sql"\nurl = "{postgres_url}"\nquery = "{good}"\n\n'
        f'[sources.broken]\nkind = "sql"\nurl = "{postgres_url}"\nquery = "{broken}"\n',
        encoding="utf-8",
    )
    result = check(config)
    assert result.exit_code == 2, result.output
    output = one_line(result.stdout)
    line = line_of(config, "query", occurrence=2)
    assert f"{config}:{line}: sources.broken.query:" in output, output
    assert 'column "no_such_column" does not exist' in output
    assert "sources.good" not in output


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word: a database
    behind a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()


def test_a_silent_source_times_out(tmp_path: Path, database: Path, silent_port: int) -> None:
    silent = f"postgresql://nobody@127.0.0.1:{silent_port}/app"
    sources = SOURCES.replace("sqlite:///{database}", silent, 1)
    config = write_config(tmp_path, database, "", sources=sources)
    result = check(config, "--timeout", "0.3")
    assert result.exit_code == 1, result.output
    output = one_line(result.stdout)
    assert "timed out after 300 ms" in output, output


def test_a_failed_lookup_exits_1(tmp_path: Path, database: Path) -> None:
    config = write_config(tmp_path, database, '\n[[card.fields]]\nlabel = "N"\nvalue = "1 / 0"\n')
    result = check(config, "--email", "ann@acme.example")
    assert result.exit_code == 1, result.output
    assert "ZeroDivisionError" in one_line(result.stdout)


# ── Output that names the user's own things ─────────────────────────────────────────────────


def test_bracketed_text_is_shown_as_written(tmp_path: Path, database: Path) -> None:
    folder = tmp_path / "[prod]"
    folder.mkdir()
    config = write_config(folder, database, "")
    result = check(config)
    assert result.exit_code == 0, result.output
    output = one_line(result.stdout)
    assert f"{config}: valid" in output
    assert "No [helpdesks] configured." in output


def test_config_errors_keep_their_table_names(tmp_path: Path) -> None:
    config = tmp_path / "deskside.toml"
    config.write_text('[sources.app]\nkind = "sql"\nurl = "sqlite:///x.db"\n', encoding="utf-8")
    result = check(config)
    assert result.exit_code == 2, result.output
    assert "add `query = …` to [sources.app]" in one_line(result.stderr)
