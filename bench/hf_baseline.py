"""Baseline for GPU benchmark notes (not part of falconq): Hugging Face transformers' FalconForCausalLM, fp16,
Falcon-7B shape, random weights, greedy generate() with a fixed number of new tokens. Run on the GPU machine in the
same call as `falconq bench`, so both numbers come from the same card:

    python3 bench/hf_baseline.py --batch 1,64 --prompt-len 64 --new-tokens 128 [--layers 32]
Prints one JSON line per batch size.
"""
import argparse, json, time

import torch
from transformers import FalconConfig, FalconForCausalLM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", default="1,64")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--layers", type=int, default=32)
    args = parser.parse_args()

    config = FalconConfig(hidden_size=4544, num_attention_heads=71, num_hidden_layers=args.layers, vocab_size=65024,
                          multi_query=True, new_decoder_architecture=False, parallel_attn=True, bias=False,
                          alibi=False, bos_token_id=11, eos_token_id=11)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = FalconForCausalLM(config).to(torch.float16).eval()
    for batch in [int(b) for b in args.batch.split(",")]:
        ids = torch.randint(12, 65024, (batch, args.prompt_len), device="cuda")
        mask = torch.ones_like(ids)
        kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=11)
        model.generate(ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=11)
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=mask, **kwargs)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        generated = (out.shape[1] - args.prompt_len) * batch
        print(json.dumps({"impl": "transformers-fp16", "batch": batch, "prompt_len": args.prompt_len,
                          "new_tokens": args.new_tokens, "layers": args.layers, "seconds": round(seconds, 3),
                          "tokens_per_s": round(generated / seconds, 1),
                          "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                          "device": torch.cuda.get_device_name()}), flush=True)


if __name__ == "__main__":
    main()
