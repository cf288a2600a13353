"""Command line: ``emotion-agent analyze | batch | demo | models | ask | eval | report | why | serve | stream``.

The app is composed here, explicitly, from the commands of each layer (the agent's, the eval
harness's, the service's); importing a module never registers a command. User mistakes (no
input, missing file, unknown model, bad split...) print one line and exit with code 2.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from pydantic import ValidationError

from emotion_agent.cli import agent_commands, batch, demo, stream_client
from emotion_agent.console import UserError, err
from emotion_agent.cli import eval_commands
from emotion_agent.web import cli as service_commands


def build_app() -> typer.Typer:
    """The ``emotion-agent`` Typer app with every command attached."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Multimodal emotion recognition agent (MELD's 7 labels), offline on CPU.")
    app.command()(agent_commands.analyze)
    app.command()(demo.demo)
    app.command()(batch.batch)
    app.command()(agent_commands.models)
    app.command()(agent_commands.ask)
    app.add_typer(eval_commands.eval_app, name="eval")
    app.command()(eval_commands.report)
    app.command()(eval_commands.why)
    app.command()(service_commands.serve)
    app.command()(stream_client.stream)
    return app


app = build_app()


def main() -> None:
    """Entry point of the ``emotion-agent`` script and ``python -m emotion_agent``."""
    from emotion_agent.agent.inputs import InputError
    from emotion_agent.agent.llm import LLMError
    from emotion_agent.agent.memory import MemoryStoreError
    from emotion_agent.evals.meld import MeldError
    from emotion_agent.tools.assets import AssetError
    from emotion_agent.tools.media_checks import MediaCheckError
    from emotion_agent.tools.settings import SettingsError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (UserError, InputError, AssetError, MeldError, LLMError, MemoryStoreError, SettingsError, MediaCheckError,
            FileNotFoundError) as exc:
        sys.stderr.write("error: " + " ".join(str(exc).split()) + "\n")
        sys.exit(2)
    except ValidationError as exc:  # a setting with a bad value (EMOTION_AGENT_*): say which, exit 2
        sys.stderr.write("error: invalid setting: " + " ".join(str(exc).split())[:300] + "\n")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
