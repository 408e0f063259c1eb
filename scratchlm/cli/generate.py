"""The ``generate`` and ``interactive`` commands: docopt arguments -> checked settings -> text on stdout.

Every option is checked before the checkpoint is read, so a typo costs nothing;
problems raise ``UserError`` subclasses that ``cli/main.py`` prints as one line (exit 2).
The text is written as it is produced (prompt first, then each piece, flushed), and
``--output-file`` is written once, atomically, when all samples are done (as JSON with
``--show-probs``: each sample's text and its tokens' probabilities).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from scratchlm import backend
from scratchlm.cli.options import float_option, int_option, output_file_option, write_text_atomically
from scratchlm.cli.unseen import UnseenPolicy, fit_to_vocabulary
from scratchlm.errors import OptionError

EXIT_INTERRUPTED = 130
DEFAULT_TOP_PROBS = 5           # the usage string's "(default: 5)": no docopt default, so "given" shows
DEFAULT_LENGTH_PENALTY = 1.0    # likewise "(default: 1.0)"
SAMPLING_ONLY = ("--temperature", "--top-k", "--top-p")


def sampling_settings(args: dict, given: set[str] = frozenset()):
    """The checked settings; ``given``: the options named on the command line (not defaults)."""
    from scratchlm.inference.sampling import SamplingSettings

    stop = args.get("--stop")
    if stop is not None and stop == "":
        raise OptionError("--stop needs a non-empty string")
    beam_width = _optional(args, "--beam-width", lambda: int_option(args, "--beam-width", minimum=1,
                                                                     meaning=" (leave it out to sample)"))
    length_penalty = _optional(args, "--length-penalty", lambda: float_option(args, "--length-penalty"))
    if beam_width is None and length_penalty is not None:
        raise OptionError("--length-penalty ranks the beams of a beam search: add --beam-width N, or drop it")
    if beam_width is not None:
        _check_no_sampling(args, given)
    top_probs = _optional(args, "--top-probs", lambda: int_option(args, "--top-probs", minimum=1))
    if top_probs is not None and not args.get("--show-probs"):
        raise OptionError("--top-probs K sets how many alternatives --show-probs lists: add --show-probs, or drop it")
    return SamplingSettings(
        max_tokens=int_option(args, "--max-tokens", minimum=0),
        temperature=float_option(args, "--temperature"),
        top_k=int_option(args, "--top-k", minimum=0, meaning=" (0 turns top-k off)"),
        top_p=float_option(args, "--top-p"),
        seed=int_option(args, "--seed", minimum=0),
        stop=stop,
        repetition_penalty=float_option(args, "--repetition-penalty"),
        beam_width=beam_width or 0,
        length_penalty=DEFAULT_LENGTH_PENALTY if length_penalty is None else length_penalty,
        show_probs=(top_probs or DEFAULT_TOP_PROBS) if args.get("--show-probs") else 0,
    )


def _optional(args: dict, name: str, convert):
    """The converted value of an option without a docopt default, or None where it is not given."""
    return None if args.get(name) is None else convert()


def _check_no_sampling(args: dict, given: set[str]) -> None:
    """Beam search is deterministic: options that shape a random draw contradict it."""
    clashing = [name for name in SAMPLING_ONLY if name in given]
    if args.get("--num-samples") is not None and int_option(args, "--num-samples", minimum=1) > 1:
        clashing.append(f"--num-samples {int(str(args['--num-samples']).strip())}")
    if clashing:
        raise OptionError(f"--beam-width searches for the one likeliest text, so it takes no sampling options: "
                          f"drop {' and '.join(clashing)}, or drop --beam-width to sample")


def model_summary(model, tokenizer, device: str) -> str:
    cfg = model.config
    return (f"Model: {model.num_parameters():,} parameters, dim {cfg.d_model}, {cfg.n_layers} layers, "
            f"{cfg.n_heads} heads, context {cfg.max_seq_len}, {cfg.pos_encoding} positions, "
            f"{tokenizer.kind} tokenizer ({tokenizer.vocab_size} symbols), {device}")


def run_generate_command(args: dict, argv=()) -> int:
    """``generate`` (or ``interactive``, the same as ``generate --interactive``); ``argv`` tells
    the options given from docopt's defaults."""
    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.cli.argv import given_options
    from scratchlm.cli.main import __doc__ as usage
    from scratchlm.inference.decoder import Decoder
    from scratchlm.inference.probs import ProbabilityRecorder
    from scratchlm.inference.sampling import generate_text, prompt_ids

    settings = sampling_settings(args, given_options(argv, usage) if argv else set())
    unseen_policy = UnseenPolicy.from_args(args)
    num_samples = int_option(args, "--num-samples", minimum=1)
    output = output_file_option(args, "--output-file", inputs=("CKPT",))
    device = backend.resolve_device(args["--device"])
    checkpoint = load_checkpoint(args["CKPT"])
    model = checkpoint.build_model(device)
    tokenizer = checkpoint.tokenizer
    decoder = Decoder(model)

    if args.get("--interactive") or args.get("interactive"):
        def fit(prompt: str) -> str:
            return fit_to_vocabulary(tokenizer, prompt, unseen_policy, "the prompt")[0]

        _announce_compile(device, bool(args.get("--quiet")))
        return _run_interactive(decoder, tokenizer, settings, model_summary(model, tokenizer, device), output, fit)

    prompt, unseen = fit_to_vocabulary(tokenizer, args.get("--prompt") or "", unseen_policy, "--prompt")
    if unseen and not args.get("--quiet"):
        print(f"--prompt: {unseen_policy.describe(unseen)} (characters the model never saw)", file=sys.stderr)
    prompt_ids(tokenizer, prompt)
    _announce_compile(device, bool(args.get("--quiet")))      # only once the input has passed every check
    rng = np.random.default_rng(settings.seed)
    recorder = ProbabilityRecorder(tokenizer, settings.show_probs) if settings.show_probs else None
    samples, probabilities = [], []
    try:
        for index in range(num_samples):
            pieces = generate_text(decoder, tokenizer, prompt, settings, rng, recorder)
            samples.append(_stream_sample(pieces, prompt, index, num_samples))
            if recorder is not None:
                probabilities.append(_show(recorder.take()))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.stdout.flush()
        print("interrupted: nothing written to --output-file" if output else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if output is not None and recorder is not None:
        document = {"prompt": prompt, "samples": [{"text": text, "tokens": [r.to_dict() for r in records]}
                                                  for text, records in zip(samples, probabilities)]}
        write_text_atomically(output, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif output is not None:
        write_text_atomically(output, "\n\n".join(samples) + "\n")
    return 0


def _show(records):
    """Print a sample's token probabilities (``probs_view``); return them for --output-file."""
    from scratchlm.cli.probs_view import show_probabilities

    show_probabilities(records)
    return records


def _announce_compile(device: str, quiet: bool) -> None:
    """On stderr, so that stdout holds only the text: the first token waits for the kernels' compile."""
    from scratchlm.cli.kernel_cache import GENERATE_KERNELS, compile_notice

    note = None if quiet else compile_notice(GENERATE_KERNELS, device, "generation")
    if note:
        print(note, file=sys.stderr, flush=True)


def _stream_sample(pieces, prompt: str, index: int, count: int) -> str:
    """Print the prompt, then each piece as it comes (flushed); return the whole sample."""
    out = sys.stdout
    if count > 1:
        from rich.console import Console

        console = Console(highlight=False)
        if console.is_terminal:
            console.rule(f"sample {index + 1} of {count}", style="dim")
        else:
            out.write(("\n" if index else "") + f"--- sample {index + 1} of {count} ---\n")
    out.write(prompt)
    out.flush()
    text = [prompt]
    for piece in pieces:
        text.append(piece)
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return "".join(text)


def _run_interactive(decoder, tokenizer, settings, summary: str, output, fit_prompt) -> int:
    from scratchlm.inference.interactive import InteractiveSession, read_line_with_editing

    transcript: list[str] = []

    def save(prompt: str, continuation: str) -> None:
        transcript.append(prompt + continuation)
        write_text_atomically(output, "\n\n".join(transcript) + "\n")

    from scratchlm.cli.probs_view import show_probabilities

    session = InteractiveSession(decoder, tokenizer, settings, summary, on_sample=save if output else None,
                                 fit_prompt=fit_prompt, show_probabilities=show_probabilities)
    return session.run(read_line_with_editing())
