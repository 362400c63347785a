"""Tuning Studio: start the web studio, or use it headless from the command line.

    python app.py [--host 127.0.0.1] [--port 7860] [--data-dir data] [--auth USER:PASSWORD]
                  [--api-key KEY] [--hub-model ORG/NAME ...]
    python app.py validate FILE [--json] [--sheet NAME] [--model NAME] [--no-tokens]
    python app.py tune --data FILE --name NAME [--model BASE] [--epochs N] [--batch-size N]
                       [--learning-rate F] [--learning-rate-multiplier F] [--lora-rank N]
                       [--eval-rows N] [--seed N] [--sheet S] [--data-dir DIR]
    python app.py generate --model NAME [--checkpoint epoch-N] [--field KEY=VALUE ...]
                           [--temperature F] [--max-output-tokens N] [--stop TEXT] [--data-dir DIR] [TEXT]

`validate` exits 0 when the file is valid (warnings and guidance allowed), 1 when it has errors,
2 when it cannot be read at all. `tune` trains a model into the studio's library with a progress
line in the terminal: exit 0 when it is ready, 1 when it failed or was cancelled, 2 when the file
cannot be read, 130 after Ctrl-C (the job is cancelled cleanly). `generate` streams the answer to
standard output: exit 0 with an answer, 2 when the model, checkpoint, input or a setting cannot be
used.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see training/tuning/runtime.py
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
COMMANDS = ("serve", "validate", "tune", "generate", "export", "worker")
KEEP_ALIVE_S = 75
"""Seconds an idle HTTP connection stays open (see ``serve``)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    parser = argparse.ArgumentParser(prog="app.py", description="Tuning Studio")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the web studio (the default)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    serve.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                       help="folder for the database, models and uploads (default ./data)")
    serve.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                       help="login required to open the studio; repeat for several users; "
                            "also read from TUNING_STUDIO_AUTH. Required off loopback.")
    serve.add_argument("--api-key", default=None, metavar="KEY",
                       help="key the /v1beta API requires (x-goog-api-key header or ?key=); "
                            "also read from TUNING_STUDIO_API_KEY. Required off loopback.")
    serve.add_argument("--hub-model", action="append", default=[], metavar="ORG/NAME",
                       help="a Hugging Face model id the /v1beta API may use as a base model "
                            "(repeat for several; also TUNING_STUDIO_HUB_MODELS, comma-separated). "
                            "The API names models by id only: the bundled one, the folders in "
                            "<data>/models and these.")

    serve.add_argument("--nnodes", type=int, default=1,
                       help="machines each job trains on (default 1); the others run `app.py "
                            "worker` with the same --nnodes and --rdzv-endpoint")
    serve.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                       help="this machine's address as the others reach it, and a free port for "
                            "the jobs' rendezvous (needed with --nnodes above 1)")

    validate = commands.add_parser("validate", help="check a dataset file and print the report")
    validate.add_argument("file", type=Path)
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.add_argument("--sheet", help="XLSX sheet to read (default: the first)")
    validate.add_argument("--model", default=None, help="base model whose tokenizer counts tokens")
    validate.add_argument("--no-tokens", action="store_true", help="skip token counts")
    validate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                          help="folder holding prepared base models (default ./data)")

    from training.cli.tune import add_arguments

    tune = commands.add_parser("tune", help="tune a model on a dataset file, in the terminal")
    add_arguments(tune)
    tune.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                      help="the studio's data folder: the library the model goes into (default ./data)")

    from training.cli import generate as cli_generate

    generate = commands.add_parser("generate", help="answer a prompt with a base or tuned model")
    cli_generate.add_arguments(generate)
    generate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                          help="the studio's data folder: where tuned models are (default ./data)")

    from training.cli import export as cli_export

    export = commands.add_parser("export", help="export a tuned model: GGUF (llama.cpp, Ollama), "
                                                "adapter or merged model")
    cli_export.add_arguments(export)
    export.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="the studio's data folder: where tuned models are (default ./data)")

    from training.cli import worker as cli_worker

    worker = commands.add_parser("worker", help="train the studio's jobs with this machine too "
                                                "(a second machine of a multi-machine studio)")
    cli_worker.add_arguments(worker)
    worker.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="this machine's data folder: where base models are (default ./data)")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth '{value}' must be USER:PASSWORD, both non-empty.")
        pairs.append((user, password))
    return pairs


def serve(args: argparse.Namespace) -> int:
    auth_values = list(args.auth)
    if os.environ.get("TUNING_STUDIO_AUTH"):
        auth_values.append(os.environ["TUNING_STUDIO_AUTH"])
    auth = parse_auth(auth_values)
    api_key = args.api_key or os.environ.get("TUNING_STUDIO_API_KEY") or None
    hub_models = [*args.hub_model, *os.environ.get("TUNING_STUDIO_HUB_MODELS", "").split(",")]
    hub_models = tuple(dict.fromkeys(name.strip() for name in hub_models if name.strip()))
    if args.nnodes > 1 and not args.rdzv_endpoint:
        print(f"--nnodes {args.nnodes} needs --rdzv-endpoint HOST:PORT: this machine's address as "
              "the others reach it and a free port, given to `app.py worker` too.", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not auth:
        print(f"Refusing to listen on {args.host} without a login: anyone on the network could "
              "use the studio. Add --auth USER:PASSWORD (or set TUNING_STUDIO_AUTH), or listen on "
              "127.0.0.1.", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not api_key:
        print(f"Refusing to listen on {args.host} without an API key: anyone on the network could "
              "use the /v1beta API. Add --api-key KEY (or set TUNING_STUDIO_API_KEY), or listen "
              "on 127.0.0.1.", file=sys.stderr)
        return 2

    from training.core.layout import log_file

    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _configure_logging(log_file(data_dir))

    from studio.server import build_app, use_own_cache

    use_own_cache(data_dir)  # before gradio is imported: see studio/server.py
    import uvicorn

    from storage.db import Store
    from studio.context import StudioContext
    from training.jobs.runner import JobRunner
    from training.tuning.runtime import configure_threads

    configure_threads()
    store = Store(data_dir)
    from training.jobs.workers import Nodes

    runner = JobRunner(store, data_dir, nodes=Nodes(args.nnodes, args.rdzv_endpoint))
    runner.start()  # resumes the jobs that were training when the studio last stopped
    try:
        ctx = StudioContext(data_dir=data_dir, store=store, runner=runner)
        ctx.prepare_bundled_in_background()
        app = build_app(ctx, host=args.host, port=args.port, auth=auth, api_key=api_key,
                        hub_models=hub_models)
        print(f"Tuning Studio: http://{args.host}:{args.port}  (data in {data_dir}; "
              f"API at http://{args.host}:{args.port}/v1beta)", flush=True)
        # An idle connection is kept 75 s (uvicorn's default is 5 s): API clients that poll an
        # operation every few seconds reuse their connection, and one closed by the server just
        # as the next poll is sent fails with "connection reset by peer" (seen with
        # google.generativeai's operation.result()).
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    timeout_keep_alive=KEEP_ALIVE_S)
    finally:
        runner.stop()  # a job still training is left 'interrupted' and resumes at next start
    return 0


def validate(args: argparse.Namespace) -> int:
    from training.core.errors import StudioError
    from training.data.validation import validate_file

    tokenizer = None
    try:
        if not args.no_tokens:
            tokenizer = _load_tokenizer(args.model, args.data_dir.resolve())
        result, _, report = validate_file(args.file, tokenizer=tokenizer, sheet=args.sheet)
    except StudioError as error:
        if args.json:
            print(json.dumps({"ok": False, "readable": False, "error": str(error)}))
        else:
            print(f"Cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"file": str(args.file), "format": result.format, "label": result.label,
                          "readable": True, **report.to_dict()}, ensure_ascii=False, indent=1))
    else:
        print(f"{args.file}: {result.summary}")
        for problem in report.problems:
            print(f"  {problem.severity:7s} {problem.message}")
        if report.truncated_rows:
            print(f"  rows that will be truncated: {', '.join(map(str, report.truncated_rows))}")
        verdict = "valid" if report.ok else f"{len(report.errors)} error(s)"
        print(f"{report.examples} examples: {verdict}, {len(report.warnings)} warning(s)")
    return 0 if report.ok else 1


def _load_tokenizer(model: str | None, data_dir: Path):
    from training import models

    name = model or models.BUNDLED_MODEL
    if name == models.BUNDLED_MODEL and not models.bundled_folder(data_dir).exists():
        print("Preparing the bundled base model (first run only, about 20 s)…", file=sys.stderr)
        models.prepare_bundled_model(data_dir)
    return models.load_tokenizer(models.resolve_model(name, data_dir))


def _configure_logging(log_file: Path) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(log_file, encoding="utf-8")],
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "validate":
        return validate(args)
    if args.command == "tune":
        from training.cli.tune import tune

        data_dir = args.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        return tune(args, data_dir)
    if args.command == "generate":
        from training.cli.generate import run

        data_dir = args.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        return run(args, data_dir)
    if args.command == "worker":
        from training.cli.worker import run as worker

        return worker(args, args.data_dir.resolve())
    if args.command == "export":
        from training.cli.export import run as export

        return export(args, args.data_dir.resolve())
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
