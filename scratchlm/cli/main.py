"""scratchlm -- train, sample and evaluate character-level GPT models built from scratch.

Usage:
  scratchlm train [DATA...] [options]
  scratchlm generate CKPT [options]
  scratchlm interactive CKPT [options]
  scratchlm evaluate CKPT [DATA...] [options]
  scratchlm export CKPT OUTPUT_DIR [options]
  scratchlm prepare DATA... [options]
  scratchlm (-h | --help)
  scratchlm --version

Commands:
  train DATA...        Train a model on DATA: UTF-8 text files, folders (their .txt, .md, .rst
                       files, recursively) or glob patterns, joined in order, or a folder written by
                       prepare (optional with a run's config.yaml as --config: it names its data, so it
                       alone repeats the run).
  generate CKPT        Continue a prompt with the model in checkpoint CKPT.
  interactive CKPT     A prompt loop with the model in CKPT (the same as generate CKPT --interactive).
  evaluate CKPT DATA... Score every character of DATA (files, folders or patterns, as for
                       train) with the model in CKPT; evaluate CKPT --data FILE is the same.
  export CKPT OUTPUT_DIR Write the model in CKPT as a Hugging Face GPT-2 folder that transformers'
                       AutoModelForCausalLM and AutoTokenizer load (learned positions and LayerNorm only).
  prepare DATA...      Tokenize DATA once into a dataset folder (--output DIR) that train DIR maps from
                       disk: memory stays flat whatever the size of the text.

Train options:
  --output-dir DIR        Where checkpoints, logs and config.yaml go [default: runs/model].
  --model-dim N           Hidden size d_model [default: 128].
  --num-heads N           Attention heads; must divide --model-dim [default: 4].
  --num-layers N          Transformer blocks [default: 4].
  --max-seq-len N         Context length in tokens [default: 128].
  --dropout P             Dropout probability in [0, 1); 0.1-0.2 helps long runs on small data [default: 0.0].
  --epochs N              Passes over the training split [default: 10].
  --max-steps N           Stop after N optimizer steps in total; the learning-rate decay
                          still spans --epochs, an auto warm-up counts N (0: no limit) [default: 0].
  --learning-rate LR      Peak learning rate of AdamW [default: 0.003].
  --weight-decay WD       Decoupled weight decay on the weight matrices [default: 0.1].
  --warmup-steps N        Linear warm-up steps before the schedule; auto: 10% of the run's
                          steps (all epochs', or --max-steps if lower) [default: auto].
  --lr-schedule NAME      cosine (decay to 10% of the peak) or constant [default: cosine].
  --cache-dir DIR         Where the token cache of a DATA of 32 MB or more is kept, so that later runs map
                          it instead of tokenizing again (default: $SCRATCHLM_CACHE_DIR, else
                          ~/.cache/scratchlm/tokens).
  --eval-tokens N         Score a fixed, evenly spread sample of about N validation tokens at each
                          evaluation when the split is larger; evaluate scores all (0: all) [default: 262144].
  --gradient-clip C       Clip the global gradient norm to C (0: off) [default: 1.0].
  --grad-accum N          Micro-batches accumulated per optimizer step [default: 1].
  --eval-interval N       Also evaluate every N steps (0: only at the end of each epoch) [default: 0].
  --patience N            Stop after N evaluations without a better val loss (0: off) [default: 0].
  --pos-encoding KIND     learned, sinusoidal or rope [default: learned].
  --norm KIND             layernorm or rmsnorm [default: layernorm].
  --resume-from CKPT      Continue a run from one of its checkpoints: exactly from the newest epoch
                          checkpoint, final_model.pt or interrupted.pt (older epochs keep weights only).
  --init-from MODEL       Fine-tune: a new run that starts from the weights and tokenizer of a checkpoint
                          or a Hugging Face GPT-2 folder (its shape; --max-seq-len may be shorter).
  --config FILE           Read settings from a YAML file (the keys of a run's config.yaml);
                          options given on the command line win.
  --keep-checkpoints N    Keep only the newest N epoch checkpoints (0: keep all) [default: 0]; all but
                          the newest keep the weights only (a third of the disk).
  --overwrite             Replace the run already in --output-dir (resuming in its own folder: the checkpoints after CKPT).
  --dtype NAME            float32, or float64 for exact numerical checks (about 2x slower) [default: float32].
  --precision NAME        fp32, or bf16: Linear and MLP products read bf16 on the CPU's bf16 units
                          (AMX, AVX512-BF16; pip install 'scratchlm[bf16]'), weights stay fp32 [default: fp32].
  --mixed-precision       The same as --precision bf16.
  --profile               Profile a few warm training steps: a table of where their time goes (matrix
                          products, attention, norms, the tape, AdamW), shown at the end and kept
                          in profile.md in --output-dir.

Train and prepare options:
  --val-split F           Fraction of the text (its tail) held out for validation, in (0, 1) [default: 0.1].
  --validation-data FILE  Validate on this held-out text file instead (all of DATA then trains);
                          it may use only characters of DATA (or use --tokenizer byte).
  --tokenizer KIND        char (a vocabulary of the text's characters), byte (all 256 bytes), or the path of
                          a BPE tokenizer: a tokenizer.json, or a folder with one or with vocab.json +
                          merges.txt (needs pip install 'scratchlm[hf]') [default: char].

Generate options:
  --prompt TEXT           Text to continue (empty: start from a new line, or from <|endoftext|> with a
                          GPT-2 tokenizer) [default: ].
  --num-samples N         Independent samples to draw; the same --seed gives the same samples [default: 1].
  --interactive           A prompt loop: type text, get a continuation; /help lists commands.

Generate and interactive options:
  --max-tokens N          Tokens to generate, exactly; past the context length the window slides [default: 200].
  --temperature T         Sampling temperature, 0 or more; 0 means greedy [default: 0.8].
  --top-k K               Sample among the K likeliest tokens (0: off) [default: 0].
  --top-p P               Sample among the likeliest tokens holding probability P, in (0, 1];
                          combines with --top-k (1.0: off) [default: 1.0].
  --repetition-penalty P  Make tokens already in the text less likely (CTRL's penalty: their logits are
                          divided by P where positive, multiplied where negative); more than 0,
                          1.2 is typical (1.0: off) [default: 1.0].
  --beam-width N          Beam search with N beams, 1 or more: the likeliest continuation, deterministic
                          (no --temperature, --top-k, --top-p or --num-samples) (default: sample).
  --length-penalty A      With --beam-width: rank finished beams by log-probability / length^A; 0 prefers
                          short ones, more than 0 longer ones (default: 1.0).
  --show-probs            After each sample, list every generated token with its probability and the
                          likeliest alternatives (the model's own, before temperature and penalties).
  --top-probs K           How many alternatives --show-probs lists, 1 or more (default: 5).
  --stop STRING           End a sample just before it would produce STRING.
  --output-file FILE      Also write the samples to FILE (once all are done); JSON with --show-probs.

Generate, interactive and evaluate options:
  --skip-unknown          Leave out the characters of the text (or --prompt) that the model never saw in
                          training, and say how many were left out (default: stop with an error).
  --replace-unknown CHAR  Replace each character the model never saw by CHAR, one it knows (e.g. " ").

Evaluate options:
  --stride N              Positions between windows, 1 to the context length: each window after the
                          first scores only its last N characters, so a smaller stride gives every
                          character more context (and takes longer). Windows are scored --batch-size
                          at a time (default: the context length).
  --data FILE             The text to score, instead of DATA (a file, folder or pattern).

Evaluate and prepare options:
  --output PATH           evaluate: also write the figures as JSON to PATH. prepare: the folder to
                          write the dataset into (required): tokens.bin and dataset.json.

Common options:
  --device DEV            auto, cpu or cuda [default: auto].
  --batch-size N          Sequences per optimizer step (train) or per forward pass (evaluate) [default: 32].
  --seed N                Random seed: the same seed gives the same run, the same samples [default: 42].
  --quiet                 Print only errors and the final result.
  --debug                 Show full tracebacks (also: SCRATCHLM_DEBUG=1).
  -h --help               Show this help.
  --version               Show the version.

Examples:
  scratchlm train data/samples/sample_data.txt --output-dir my_first_model --model-dim 64 --num-heads 2 --num-layers 2 --epochs 5 --batch-size 16
  mpirun -n 2 scratchlm train data/samples/sample_data.txt --batch-size 32    (data-parallel; docs/scale-out.md)
  scratchlm generate my_first_model/final_model.pt --prompt "The" --max-tokens 50 --temperature 0.8
  scratchlm generate my_first_model/final_model.pt --prompt "The" --beam-width 4 --show-probs
  scratchlm interactive my_first_model/final_model.pt
  scratchlm evaluate my_first_model/final_model.pt --data data/samples/sample_data.txt
"""

from __future__ import annotations

import os
import sys

from scratchlm import __version__
from scratchlm.cli.argv import COMMANDS


def main(argv=None) -> int:
    """The console entry point: the exit code of the command. A Ctrl-C at any moment, even while the
    modules are still loading (this module imports nothing heavy, so the handler is in place at once),
    ends with one line and 130; a reader of stdout that leaves early (`--help | head`) ends it with 0."""
    try:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        finally:
            sys.stdout.flush()           # inside the try: a reader gone (`--help | head`) is caught here
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except KeyboardInterrupt:
        try:
            print("interrupted", file=sys.stderr)
        except OSError:           # the terminal is gone: the exit code must still come out
            pass
        return 130


def _run(argv) -> int:
    from docopt import DocoptExit, docopt

    from scratchlm.cli.argv import check_command_line, drop_line_ending_spaces, option_table
    from scratchlm.errors import UserError

    table = option_table(__doc__)
    argv = drop_line_ending_spaces(argv, table)
    if argv and argv[0] in COMMANDS and ("-h" in argv or "--help" in argv):
        print(command_help(argv[0]))
        return 0
    try:
        if argv and argv[0] in COMMANDS:
            check_command_line(argv, table, ARGUMENTS)
        args = docopt(__doc__, argv=argv, version=f"scratchlm {__version__}")
    except UserError as exc:
        return _usage_error(str(exc))
    except DocoptExit as exc:
        return _usage_error(explain_usage_error(argv, str(exc)))
    debug = bool(args.get("--debug")) or os.environ.get("SCRATCHLM_DEBUG") == "1"
    try:
        from scratchlm.kernels.vendor_gemm import check_environment

        check_environment()
        if args["train"]:
            from scratchlm.cli.train import run_train_command

            return _end_all_ranks_on_error(run_train_command(args, argv))
        if args["generate"] or args["interactive"]:
            from scratchlm.cli.generate import run_generate_command

            return run_generate_command(args, argv)
        if args["evaluate"]:
            from scratchlm.cli.evaluate import run_evaluate_command

            return run_evaluate_command(args)
        if args["prepare"]:
            from scratchlm.cli.prepare import run_prepare_command

            return run_prepare_command(args, argv)
        if args["export"]:
            from scratchlm.cli.export import run_export_command

            return run_export_command(args)
    except BrokenPipeError:              # stdout's reader left: not an error, main() ends quietly
        raise
    except Exception as exc:
        return _end_all_ranks_on_error(report_error(exc, debug))
    return 0


def _usage_error(message: str) -> int:
    """Every rank of an mpirun job reads the same command line: rank 0 alone says what is wrong."""
    from scratchlm.training.distributed import launched_rank

    if launched_rank() == 0:
        print(f"error: {message}", file=sys.stderr)
    return 2


ARGUMENTS = {"train": ("[DATA...]",), "generate": ("CKPT",), "interactive": ("CKPT",), "evaluate": ("CKPT", "[DATA...]"),
             "export": ("CKPT", "OUTPUT_DIR"), "prepare": ("DATA...",)}
_USAGE_FORMS = {command: " ".join(("scratchlm", command, *names, "[options]")) for command, names in ARGUMENTS.items()}


def command_help(command: str) -> str:
    """The usage line, the options of one command and the common options (from the usage string)."""
    from scratchlm.cli.argv import section_commands

    picked = [section.strip("\n") for section in __doc__.split("\n\n") if command in section_commands(section)]
    return "\n\n".join([f"Usage: {_USAGE_FORMS[command]}", *picked])


def explain_usage_error(argv, message: str) -> str:
    """Turn docopt's complaint into one line that says what is wrong and what to do."""
    import re

    from scratchlm.limits import excerpt

    hint = "(scratchlm --help lists the commands and options)"
    if not argv:
        return f"no command given: use scratchlm train, generate, interactive, evaluate, export or prepare {hint}"
    if argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return f"unknown command {excerpt(argv[0])}: use train, generate, interactive, evaluate, export or prepare {hint}"
    first = message.strip().splitlines()[0] if message.strip() else ""
    if first.endswith("requires argument"):
        return f"{first.split()[0]} needs a value {hint}"
    unknown = re.findall(r"Option\(None, '([^']+)'", first)
    if unknown:
        return f"unknown option {excerpt(unknown[0], quoted=False)} {hint}"
    if argv[0] in COMMANDS:
        return f"usage: {_USAGE_FORMS[argv[0]]} {hint}"
    return f"invalid command line {hint}"


def _end_all_ranks_on_error(code: int) -> int:
    """Under mpirun, a rank that fails ends the whole job (the others would wait for it forever)."""
    from scratchlm.training.distributed import active

    group = active()
    if code and group is not None and group.size > 1:
        group.abort(code)
    return code


def report_error(exc: BaseException, debug: bool) -> int:
    """One clear line on stderr (a traceback only with --debug); exit code 2 for fixable input."""
    from scratchlm.errors import UserError

    if debug:
        import traceback

        traceback.print_exception(exc)
    fixable = isinstance(exc, UserError)
    if fixable:
        _say_once(f"error: {exc}")
        return 2
    if isinstance(exc, MemoryError):
        print("error: out of memory: reduce --batch-size or --model-dim", file=sys.stderr)
        return 1
    if not debug:
        print(f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)", file=sys.stderr)
    return 1


RANK_ZERO_GRACE_S = 2.0


def _say_once(line: str) -> None:
    """Under mpirun the ranks meet the same bad input: rank 0 says so and ends the job, and the
    others, waiting a moment first, speak (naming their rank) only if rank 0 did not."""
    from scratchlm.training.distributed import launched_rank

    rank = launched_rank()
    if rank:
        import time

        time.sleep(RANK_ZERO_GRACE_S)
        line = f"rank {rank}: {line}"
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
