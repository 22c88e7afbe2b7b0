"""What EVOL-RL's default embedding costs: `mean_hidden_states` (one no-grad trunk pass, no LM
head) against `score_responses` (one frozen log-prob pass, the trunk plus the chunked LM head)
over the same rollouts of the same model, timed in the same process, alternating, best of
`--repeats`.

    python benchmarks/embedding_cost.py                    # the lab model, 128 rows of 20 + 40
    python benchmarks/embedding_cost.py --model tiny --rows 64

Prints a table, then one JSON line (`ratio` = embedding time / log-prob time).
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lab", help="a model name mgrpo loads (default: lab)")
    parser.add_argument("--rows", type=int, default=128, help="rollouts (default 128: 8 x 16)")
    parser.add_argument("--prompt", type=int, default=20, help="prompt tokens")
    parser.add_argument("--response", type=int, default=40, help="response tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each (best kept)")
    args = parser.parse_args()

    import torch

    from mgrpo.models import load_model_and_tokenizer
    from mgrpo.rollout.scoring import mean_hidden_states, score_responses

    torch.set_num_threads(1)
    model, _ = load_model_and_tokenizer(args.model)
    model.eval()
    vocab = model.get_output_embeddings().out_features
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, vocab, (args.rows, args.prompt), generator=gen).tolist()
    responses = torch.randint(3, vocab, (args.rows, args.response), generator=gen)
    mask = torch.ones(args.rows, args.response, dtype=torch.bool)
    times: dict[str, list[float]] = {"embedding": [], "logprobs": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        mean_hidden_states(model, prompts, responses, mask)
        times["embedding"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            score_responses(model, prompts, responses, mask, 1.0)
        times["logprobs"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    print(f"| pass | best of {args.repeats} (s) |")
    print("|---|---|")
    print(f"| mean_hidden_states (EVOL-RL's embedding) | {best['embedding']:.3f} |")
    print(f"| score_responses (a frozen log-prob pass) | {best['logprobs']:.3f} |")
    print(json.dumps({"model": args.model, "rows": args.rows, "tokens": args.prompt + args.response,
                      "embedding_s": round(best["embedding"], 4),
                      "logprobs_s": round(best["logprobs"], 4),
                      "ratio": round(best["embedding"] / best["logprobs"], 3),
                      "threads": 1, "machine": platform.processor() or platform.machine()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
