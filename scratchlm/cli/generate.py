"""The ``generate`` command: docopt arguments -> checked settings -> text streamed to stdout.

Every option is checked before the checkpoint is read, so a typo costs nothing;
problems raise ``UserError`` subclasses that ``cli/main.py`` prints as one line (exit 2).
The text is written as it is produced (prompt first, then each piece, flushed), and
``--output-file`` is written once, atomically, when all samples are done.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from scratchlm import backend
from scratchlm.cli.options import float_option, int_option, output_file_option, write_text_atomically
from scratchlm.cli.unseen import UnseenPolicy, fit_to_vocabulary
from scratchlm.errors import OptionError

EXIT_INTERRUPTED = 130


def sampling_settings(args: dict):
    from scratchlm.inference.sampling import SamplingSettings

    stop = args.get("--stop")
    if stop is not None and stop == "":
        raise OptionError("--stop needs a non-empty string")
    return SamplingSettings(
        max_tokens=int_option(args, "--max-tokens", minimum=0),
        temperature=float_option(args, "--temperature"),
        top_k=int_option(args, "--top-k", minimum=0, meaning=" (0 turns top-k off)"),
        top_p=float_option(args, "--top-p"),
        seed=int_option(args, "--seed", minimum=0),
        stop=stop,
    )


def model_summary(model, tokenizer, device: str) -> str:
    cfg = model.config
    return (f"Model: {model.num_parameters():,} parameters, dim {cfg.d_model}, {cfg.n_layers} layers, "
            f"{cfg.n_heads} heads, context {cfg.max_seq_len}, {cfg.pos_encoding} positions, "
            f"{tokenizer.kind} tokenizer ({tokenizer.vocab_size} symbols), {device}")


def run_generate_command(args: dict) -> int:
    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.inference.decoder import Decoder
    from scratchlm.inference.sampling import generate_text, prompt_ids

    settings = sampling_settings(args)
    unseen_policy = UnseenPolicy.from_args(args)
    num_samples = int_option(args, "--num-samples", minimum=1)
    output = output_file_option(args, "--output-file", inputs=("CKPT",))
    device = backend.resolve_device(args["--device"])
    checkpoint = load_checkpoint(args["CKPT"])
    model = checkpoint.build_model(device)
    tokenizer = checkpoint.tokenizer
    decoder = Decoder(model)

    if args.get("--interactive"):
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
    try:
        samples = [_stream_sample(generate_text(decoder, tokenizer, prompt, settings, rng), prompt, index, num_samples)
                   for index in range(num_samples)]
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.stdout.flush()
        print("interrupted: nothing written to --output-file" if output else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if output is not None:
        write_text_atomically(output, "\n\n".join(samples) + "\n")
    return 0


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

    session = InteractiveSession(decoder, tokenizer, settings, summary, on_sample=save if output else None,
                                 fit_prompt=fit_prompt)
    return session.run(read_line_with_editing())
