"""`python app.py generate`: answer one prompt with a base or tuned model, in the terminal.

The answer streams to standard output as it is generated; messages go to standard error. A tuned
model is prompted with its own template: give its input fields with ``--field KEY=VALUE`` (or
one TEXT when it has a single field); a chat-tuned or base model takes TEXT as the user's
message (base models: as a text to continue, or with ``--chat`` through its chat template).
Settings not given are the model's defaults. Exit status: 0 with an answer, 2 when the model,
checkpoint, input or a setting cannot be used (the message says what to do), 130 after Ctrl-C.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from training.core.errors import StudioError

SETTINGS = ("temperature", "top_p", "top_k", "max_output_tokens", "seed")
"""Options that set a GenerationParams field of the same name (unset: the model's default)."""


def add_arguments(parser) -> None:
    """The `generate` command's options (called by app.py's parse_args)."""
    parser.add_argument("text", nargs="?", default=None,
                        help="the prompt: the value of a single-field tuned model, a chat message, "
                             "or text for a base model to continue")
    parser.add_argument("--model", required=True,
                        help="a tuned model id (see My Library) or a base model")
    parser.add_argument("--checkpoint", default=None, help="a tuned model's checkpoint, e.g. epoch-2")
    parser.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                        help="an input field of the tuned model's prompt; repeat for each field")
    parser.add_argument("--chat", action="store_true",
                        help="send TEXT to a base model as a chat message (its chat template)")
    parser.add_argument("--temperature", type=float, help="0 (the most likely answer) to 2")
    parser.add_argument("--top-p", type=float, help="above 0, at most 1")
    parser.add_argument("--top-k", type=int, help="0 (no limit) to 1000")
    parser.add_argument("--max-output-tokens", type=int, help="1 to 8192")
    parser.add_argument("--stop", action="append", default=None, metavar="TEXT",
                        help="end the answer before this text; repeat for several (at most 5)")
    parser.add_argument("--seed", type=int, help="seed for sampling (same seed, same answer)")
    parser.add_argument("--show-prompt", action="store_true",
                        help="print the rendered prompt to standard error first")


def run(args, data_dir: Path, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from storage.db import Store
    from training.inference.engine import build_prompt, resolve_target, stream
    from training.tuning.runtime import configure_threads

    configure_threads()
    _quiet_libraries()
    try:
        request = _request(args)
        with Store(data_dir) as store:
            target = resolve_target(store, data_dir, args.model, args.checkpoint)
        params = _params(args, target.defaults).check()
        if args.show_prompt:
            err.write(build_prompt(target, request) + "\n---\n")
            err.flush()
        if target.partial:
            print(f"Note: '{target.name}' is the partial model of a cancelled job; it may behave "
                  "unpredictably.", file=err)
        for piece in stream(target, request, params):
            out.write(piece)
            out.flush()
    except StudioError as error:
        print(str(error), file=err)
        return 2
    except KeyboardInterrupt:
        out.write("\n")
        return 130
    out.write("\n")
    out.flush()
    return 0


def _request(args):
    """Input fields, a chat message or a text, from the command line."""
    if args.field and args.text is not None:
        raise StudioError("Give either --field KEY=VALUE options or a TEXT, not both.")
    if args.field:
        fields = {}
        for item in args.field:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise StudioError(f"--field '{item}' must be KEY=VALUE, e.g. --field question=Why?")
            fields[key.strip()] = value
        return fields
    if args.text is None:
        raise StudioError("Nothing to answer: give a TEXT or --field KEY=VALUE options.")
    if args.chat:
        from training.core.dataset import Message

        return [Message("user", args.text)]
    return args.text


def _params(args, defaults):
    changes = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    if args.stop is not None:
        changes["stop_sequences"] = tuple(text.replace("\\n", "\n") for text in args.stop)
    return replace(defaults, **changes)


def _quiet_libraries() -> None:
    """Only the answer goes to standard output: no loading bars or library notices."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
