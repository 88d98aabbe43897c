"""`torchrig generate RUN --prompt TEXT | --input FILE`: text from a trained causal LM.

With --prompt the text is printed as it is generated. With --input (one prompt per line,
or .jsonl with a "prompt" field; - is stdin) one JSON line per prompt: {"prompt", "text",
"finish_reason", "prompt_tokens", "completion_tokens"}. Exit 2: bad input (a run of
another kind, missing weights, a prompt that does not fit the model's context).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from torchrig.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", type=Path, metavar="RUN",
        help="a causal-LM run folder or its final/ (a full model or a LoRA adapter)",
    )  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", metavar="TEXT")
    source.add_argument("--input", metavar="FILE|-", help="prompts: a line each, or .jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P")
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT",
        help="end the answer before this text (repeatable)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, help="fix the sampling (same seed, same text)")
    parser.add_argument(
        "--overflow", choices=("refuse", "slide"), default="refuse",
        help="past the trained context: refuse (default) or slide the window",
    )  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--cache", choices=("auto", "static", "dynamic"), default="auto",
        help="the KV cache: auto (a GPU: static, each token one CUDA graph replay; a CPU: "
        "dynamic), static, or dynamic (transformers' DynamicCache, eager)",
    )  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help=argparse.SUPPRESS)


def _prompts(source: str) -> Iterator[str]:
    from torchrig.serve.inputs import lines

    if source != "-" and not Path(source).is_file():
        raise UsageError(f"--input {source} is not a file", "give a file of prompts, or -")
    jsonl = Path(source).suffix.lower() == ".jsonl"
    for number, line in lines(source):
        if not jsonl:
            yield line
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"{source}:{number} is not JSON", '{"prompt": "..."}') from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise UsageError(f"{source}:{number} has no string prompt", '{"prompt": "..."}')
        yield record["prompt"]


def run(args: argparse.Namespace) -> int:
    from torchrig.serve import generate, kinds, lm
    from torchrig.serve.sampling import Sampling

    found = kinds.find(args.run)
    kinds.require(found, "causal-lm", "generate")
    model = lm.load(found.path, args.device)

    def request(prompt: str) -> generate.Request:
        return generate.Request(
            prompt_ids=list(model.tokenizer(prompt)["input_ids"]),
            max_new_tokens=args.max_new_tokens,
            sampling=Sampling(args.temperature, args.top_p),
            stop=tuple(args.stop),
            seed=args.seed,
            overflow=args.overflow,
            use_cache=not args.no_cache,
            cache=args.cache,
        )

    if args.prompt is not None:
        pieces = generate.stream(model, request(args.prompt))
        while True:
            try:
                sys.stdout.write(next(pieces))
                sys.stdout.flush()
            except StopIteration as stop:
                result: generate.Result = stop.value
                break
        sys.stdout.write("\n")
        note = f"{result.completion_tokens} tokens, {result.tokens_per_s:.0f} tokens/s, "
        note += f"finish: {result.finish_reason}"
        if result.slid:
            note += f" (the window slid: the model saw at most {model.context} tokens)"
        print(note, file=sys.stderr)
        return 0
    for prompt in _prompts(args.input):
        result = generate.complete(model, request(prompt))
        row = {
            "prompt": prompt,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0
