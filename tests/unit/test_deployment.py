"""docker-compose.yml cannot be run here (no Docker engine), so it is checked by reading it."""

import re
import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner

from tributary.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_postgres_the_api_and_dagster():
    assert set(COMPOSE["services"]) == {"postgres", "migrate", "api", "dagster-webserver", "dagster-daemon"}


def test_every_tributary_command_in_compose_exists():
    for name, service in COMPOSE["services"].items():
        command = service.get("command")
        if command and command[0] == "tributary":
            words = [w for w in command[1:] if not w.startswith("-") and not re.match(r"^[\d.]+$", w)]
            result = CliRunner().invoke(main, [*words[:2], "--help"])
            assert result.exit_code == 0, f"{name}: {shlex.join(command)} is not a tributary command"


def test_dagster_services_load_the_workspace_and_share_the_database():
    for name in ("dagster-webserver", "dagster-daemon"):
        service = COMPOSE["services"][name]
        assert "workspace.yaml" in service["command"]
        assert (ROOT / "workspace.yaml").exists()
        assert service["environment"]["DATABASE_URL"] == COMPOSE["services"]["api"]["environment"]["DATABASE_URL"]
    instance = yaml.safe_load((ROOT / "deploy/dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DATABASE_URL"}
    # As under `make up` (tributary/services.py): a failed run is retried from its failed step.
    assert instance["run_retries"] == {"enabled": True, "max_retries": 2}


def test_the_image_copies_only_paths_that_exist():
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_compose_only_sets_variables_the_settings_read():
    settings_source = (ROOT / "tributary/settings.py").read_text()
    for name, service in COMPOSE["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("TRIBUTARY_") or variable == "DATABASE_URL":
                assert f'"{variable}"' in settings_source, f"{name} sets {variable}, which nothing reads"


def test_the_readme_documents_every_variable_the_settings_read():
    read = set(re.findall(r'"((?:TRIBUTARY_|DATABASE_)[A-Z_]+)"', (ROOT / "tributary/settings.py").read_text()))
    documented = set(re.findall(r"`((?:TRIBUTARY_|DATABASE_)[A-Z_]+)`", (ROOT / "README.md").read_text()))
    assert read <= documented, f"undocumented: {sorted(read - documented)}"


def test_the_readme_lists_every_cli_command():
    readme = (ROOT / "README.md").read_text()
    for name, command in main.commands.items():
        subcommands = getattr(command, "commands", {None: None})
        for sub in subcommands:
            assert f"tributary {name}{' ' + sub if sub else ''}" in readme, f"tributary {name} {sub or ''}"


def test_migrate_gives_the_reader_the_password_the_other_services_know():
    # `migrate` sets tributary_reader's password; `tributary db url --reader` in any service prints it.
    migrate = COMPOSE["services"]["migrate"]["environment"]
    for name in ("api", "dagster-webserver", "dagster-daemon"):
        service = COMPOSE["services"][name]["environment"]
        assert migrate["DATABASE_URL"] == service["DATABASE_URL"], name
        assert migrate["TRIBUTARY_READER_PASSWORD"] == service["TRIBUTARY_READER_PASSWORD"], name
    assert migrate["TRIBUTARY_READER_PASSWORD"].startswith("${TRIBUTARY_READER_PASSWORD"), "settable from .env"


def test_postgres_is_published_on_the_loopback_only():
    assert COMPOSE["services"]["postgres"]["ports"]
    for port in COMPOSE["services"]["postgres"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
