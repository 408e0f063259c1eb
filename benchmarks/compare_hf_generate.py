"""scratchlm against Hugging Face transformers' ``generate()``: batch-1 greedy decoding, GPT-2 small.

    python benchmarks/compare_hf_generate.py --repeats 3
    python benchmarks/compare_hf_generate.py --new-tokens 10 --repeats 1 --steps 1 --warmup 0   # smoke run
    python benchmarks/compare_hf_generate.py --new-tokens 200 --json hf_generate.json

A one-off child saves a random GPT-2 small (d_model 768, 12 heads, 12 layers, 1024 positions,
GPT-2's 50,257-token vocabulary, its normal std-0.02 initialisation, fixed seed) with
``save_pretrained`` in a temporary folder, beside a byte-level BPE tokenizer of the same size
(scratchlm's loader checks the two agree). Both sides then load that folder: scratchlm with
``load_checkpoint(folder).build_model("cpu")`` and its ``Decoder`` + ``generate_tokens`` at
temperature 0; transformers with ``GPT2LMHeadModel.from_pretrained`` in eval mode and
``generate(do_sample=False, use_cache=True)`` under ``torch.inference_mode()``, with no
end-of-text token, so each produces exactly ``--new-tokens`` tokens from the same prompt ids.

As in ``compare_torch.py``, every measurement is a fresh child process (``--worker``) that
imports one side only, with ``--threads`` in the thread variables; the parent alternates the
sides, waits for quiet CPUs before each process and measures again when other processes were
busy while it timed (``machine_load.py``). Each child reports its load time, its first
generation (for scratchlm, Numba's compile or cache load), the median of ``--steps`` timed
generations after ``--warmup`` untimed ones, peak RSS, a split of one extra generation into its
first token (prefill) and the mean of the tokens after, and the ids its last timed generation produced.
The parent prints medians over processes, the ratio scratchlm/transformers, and whether the
two sides' greedy tokens agree.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_torch import child_env  # noqa: E402  (imports only configs and machine_load: nothing heavy)
from machine_load import OthersMeter, machine_info, wait_until_quiet  # noqa: E402

SIDES = ("scratchlm", "transformers")
SHAPE = dict(n_embd=768, n_head=12, n_layer=12, n_positions=1024, vocab_size=50257)   # GPT-2 small
END_OF_TEXT = "<|endoftext|>"      # GPT-2's last id (50256): pad id for generate(), never in a prompt
MODEL_SEED, PROMPT_SEED = 0, 1


# ---- the model folder, saved once by a child that imports torch -------------------------------
def byte_level_bpe(vocab_size: int):
    """GPT-2's kind of tokenizer: the 256 byte symbols, merges of byte pairs, then the end-of-text token.

    Generation works on ids and never reads it; scratchlm's loader only needs one of the model's size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    pairs = ((a, b) for a in alphabet for b in alphabet)
    merges = [next(pairs) for _ in range(vocab_size - len(alphabet) - 1)]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab[END_OF_TEXT] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([END_OF_TEXT])
    return tok


def make_model_folder(folder: Path) -> None:
    """Save the random GPT-2 small (safetensors, float32) and its tokenizer in ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(MODEL_SEED)
    eos = SHAPE["vocab_size"] - 1
    model = GPT2LMHeadModel(GPT2Config(**SHAPE, bos_token_id=eos, eos_token_id=eos))   # init: normal, std 0.02
    model.save_pretrained(folder)
    byte_level_bpe(SHAPE["vocab_size"]).save(str(folder / "tokenizer.json"))


# ---- the two sides: each returns generate(tick) -> new ids; tick() is called once per new token ----
def scratchlm_generator(folder: str, prompt: list[int], new_tokens: int):
    import numpy as np

    import scratchlm  # noqa: F401  first: it configures OpenBLAS's threads before NumPy loads them
    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.inference.decoder import Decoder
    from scratchlm.inference.sampling import SamplingSettings, generate_tokens

    decoder = Decoder(load_checkpoint(folder).build_model("cpu"))
    settings = SamplingSettings(max_tokens=new_tokens, temperature=0.0)
    ids = np.asarray(prompt, dtype=np.int64)

    def generate(tick=None) -> list[int]:
        on_token = (lambda logits, token: tick()) if tick else None
        return list(generate_tokens(decoder, ids, settings, np.random.default_rng(0), on_token))

    return generate


def transformers_generator(folder: str, prompt: list[int], new_tokens: int, threads: int):
    import torch
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(threads)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    model.generation_config.eos_token_id = None        # never stop early, never mask a token out
    ids = torch.tensor([prompt], dtype=torch.long)      # (1, P)

    class Ticker:
        """A generate() streamer: its first put() is the prompt, each later one a new token."""

        def __init__(self, tick):
            self.tick, self.prompt_seen = tick, False

        def put(self, value):
            if self.prompt_seen:
                self.tick()
            self.prompt_seen = True

        def end(self):
            pass

    def generate(tick=None) -> list[int]:
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=SHAPE["vocab_size"] - 1, eos_token_id=None,
                                 streamer=Ticker(tick) if tick else None)
        return out[0, len(prompt):].tolist()

    return generate


# ---- the child: one side, one process -------------------------------------------------------
def measure(side: str, folder: str, prompt: list[int], args) -> dict:
    """Run in a worker process: load one side, time its generations, split one into first token and the rest."""
    start = time.perf_counter()
    if side == "scratchlm":
        generate = scratchlm_generator(folder, prompt, args.new_tokens)
    else:
        generate = transformers_generator(folder, prompt, args.new_tokens, args.threads)
    load_s = time.perf_counter() - start

    def timed() -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        tokens = generate()
        return time.perf_counter() - t0, tokens

    first_s, tokens = timed()
    for _ in range(args.warmup):
        timed()
    others, cpu_start = OthersMeter(), time.process_time()
    others.start()
    runs = [timed() for _ in range(args.steps)]
    others_busy = others.stop()                                       # other processes' share of the CPUs
    times = [seconds for seconds, _ in runs]
    cpu_per_wall = (time.process_time() - cpu_start) / sum(times)    # this process's threads at work
    tokens = runs[-1][1]
    if len(tokens) != args.new_tokens:
        raise SystemExit(f"{side} produced {len(tokens)} tokens, not {args.new_tokens}")
    median_s = statistics.median(times)
    return {
        "side": side, "threads": args.threads, "load_s": load_s, "first_s": first_s, "median_s": median_s,
        "times_s": times, "tokens_per_s": args.new_tokens / median_s, "cpu_per_wall": cpu_per_wall,
        "others_busy": others_busy, **split_generation(generate),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "tokens": tokens,
    }


def split_generation(generate) -> dict:
    """One more (untimed) generation: seconds to its first token (for scratchlm: decoder reset + prefill),
    then the mean per later token, so first + (N - 1) x next is that generation's time."""
    stamps = [time.perf_counter()]
    generate(lambda: stamps.append(time.perf_counter()))
    later = len(stamps) - 2
    return {"first_token_s": stamps[1] - stamps[0], "next_token_s": (stamps[-1] - stamps[1]) / later if later else 0.0}


# ---- the parent: build the folder, alternate the sides, one process per measurement ----------
def run_child(extra: list[str], threads: int) -> subprocess.CompletedProcess:
    command = [sys.executable, str(Path(__file__).resolve()), *extra]
    done = subprocess.run(command, env=child_env(threads, None), capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{' '.join(extra[:2])} failed (exit {done.returncode})")
    return done


def run_worker(side: str, folder: Path, prompt: list[int], args) -> dict:
    """One measurement in a fresh process; again (up to ``--retries`` times) if others were busy meanwhile."""
    extra = ["--worker", side, "--model-dir", str(folder), "--prompt-ids", ",".join(map(str, prompt)),
             "--new-tokens", str(args.new_tokens), "--steps", str(args.steps), "--warmup", str(args.warmup),
             "--threads", str(args.threads)]
    for attempt in range(args.retries + 1):
        busy_before = wait_until_quiet(args.max_busy, args.patience)
        record = json.loads(run_child(extra, args.threads).stdout.strip().splitlines()[-1])
        record["busy_before"] = busy_before
        if record["others_busy"] <= args.max_busy:
            break
        print(f"  ({side}: other processes used {100 * record['others_busy']:.0f}% of the CPUs while timing; "
              f"{'measuring again' if attempt < args.retries else 'kept, marked noisy'})", flush=True)
    record["noisy"] = record["others_busy"] > args.max_busy
    return record


def describe(record: dict) -> str:
    """One process's figures on one line."""
    return (f"{record['tokens_per_s']:6.1f} tok/s  load {record['load_s']:.2f}s  first {record['first_s']:.2f}s  "
            f"first token {1000 * record['first_token_s']:.0f} ms  then {1000 * record['next_token_s']:.1f} ms/tok  "
            f"RSS {record['peak_rss_mib']:.0f} MiB  CPU/wall {record['cpu_per_wall']:.2f}  "
            f"others {100 * record['others_busy']:.0f}%")


def summarise(records: list[dict], new_tokens: int) -> dict:
    """Per side: medians over processes (peak RSS: the largest), and each process's tokens/s."""
    rows = {}
    for side in SIDES:
        mine = [r for r in records if r["side"] == side]
        rows[side] = {name: statistics.median(r[name] for r in mine)
                      for name in ("tokens_per_s", "median_s", "load_s", "first_s", "first_token_s", "next_token_s")}
        rows[side]["ms_per_token"] = 1000 * rows[side]["median_s"] / new_tokens
        rows[side]["peak_rss_mib"] = max(r["peak_rss_mib"] for r in mine)
        rows[side]["spread"] = [f"{r['tokens_per_s']:.1f}{'*' if r['noisy'] else ''}" for r in mine]
    rows["ratio"] = rows["scratchlm"]["tokens_per_s"] / rows["transformers"]["tokens_per_s"]
    return rows


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first position where two id lists differ (or where the shorter ends); None if equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def same_tokens(records: list[dict]) -> str:
    """'yes', or 'no (first difference at position k)', comparing every process with the first one."""
    reference = records[0]
    for record in records[1:]:
        k = first_difference(reference["tokens"], record["tokens"])
        if k is not None:
            return f"no (first difference at position {k}: {reference['side']} and {record['side']})"
    return "yes"


def print_table(rows: dict, new_tokens: int) -> None:
    head = ["side", "tok/s", "ms/token", f"ms/{new_tokens} tok", "first token ms", "then ms/tok",
            "first gen s", "load s", "peak RSS MiB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for side in SIDES:
        s = rows[side]
        cells = [side, f"{s['tokens_per_s']:.1f}", f"{s['ms_per_token']:.1f}", f"{1000 * s['median_s']:.0f}",
                 f"{1000 * s['first_token_s']:.0f}", f"{1000 * s['next_token_s']:.1f}", f"{s['first_s']:.2f}",
                 f"{s['load_s']:.2f}", f"{s['peak_rss_mib']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"ratio scratchlm / transformers tokens/s: {rows['ratio']:.2f}")
    spreads = "; ".join(f"{side} " + ", ".join(rows[side]["spread"]) for side in SIDES)
    print(f"tokens/s per process: {spreads}  (* = other work ran meanwhile)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=100, help="tokens each generation produces")
    parser.add_argument("--prompt-tokens", type=int, default=8, help="prompt length (ids from a seeded RNG)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per side")
    parser.add_argument("--steps", type=int, default=3, help="timed generations per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed generations after the first")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-busy", type=float, default=0.10,
                        help="the share of the CPUs other work may use before and while a process is timed")
    parser.add_argument("--patience", type=float, default=120.0, help="the longest such wait, in seconds")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure again when other processes used more than --max-busy while timing")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement to OUT")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--make-model", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.new_tokens, args.prompt_tokens, args.repeats, args.steps, args.threads) < 1 \
            or min(args.warmup, args.retries) < 0:
        parser.error("--new-tokens, --prompt-tokens, --repeats, --steps and --threads must be at least 1, "
                     "--warmup and --retries at least 0")
    if args.prompt_tokens + args.new_tokens > SHAPE["n_positions"]:
        parser.error(f"prompt and new tokens must fit the {SHAPE['n_positions']}-position window")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.make_model:
        make_model_folder(Path(args.make_model))
        return
    if args.worker:
        prompt = [int(i) for i in args.prompt_ids.split(",")]
        print(json.dumps(measure(args.worker, args.model_dir, prompt, args)))
        return
    rng = random.Random(PROMPT_SEED)
    prompt = [rng.randrange(SHAPE["vocab_size"] - 1) for _ in range(args.prompt_tokens)]
    info = machine_info(HERE.parent)
    print(f"# batch-1 greedy generation, GPT-2 small (random weights), prompt {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new: {info['cpu']} ({info['cpus']} cpus), threads {args.threads}, "
          f"commit {info['commit']}, {info['date']}, load {info['load'][0]:.2f}", flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="gpt2-small-random-") as folder:
        run_child(["--make-model", folder], args.threads)
        for repeat in range(args.repeats):
            for side in SIDES:
                record = run_worker(side, Path(folder), prompt, args)
                records.append(record)
                print(f"  {side:12s} #{repeat + 1}: {describe(record)}", flush=True)
    rows = summarise(records, args.new_tokens)
    print_table(rows, args.new_tokens)
    agreement = same_tokens(records)
    print(f"same tokens: {agreement}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "prompt": prompt, "rows": rows,
                                               "same_tokens": agreement, "records": records}, indent=1))


if __name__ == "__main__":
    main()
