"""The night at a model's scale: each step alone in a process, memory as a ratio to FP16 bytes.

    python bench/scale.py --size 1B            # 0.5B, 1B, 3B fit a 24 GB box
    python bench/scale.py --size 3B --steps merge,requantize

Builds a synthetic Llama of the size (random FP16 weights, SmolLM2's tokenizer,
written shard by shard), a master beside it (the anchor's files hard-linked
under another name, so the merge takes the master's delta too, as every night
after the first does) and a random rank-8 LoRA adapter, then runs each step
in a fresh process: our streamed merge, the same YAML through the mergekit
CLI, the streamed fuse, the streamed requantize, a few LoRA training steps
on the FP16 master, and Hermes's gate on two Q8 runtimes. For each it prints
seconds, peak anonymous memory (RssAnon, polled every 20 ms from
/proc/PID/status: what the step really holds, not the file pages of weights
it maps, which the kernel can drop) and max resident (ru_maxrss, which counts
those pages), each also as a ratio to the model's FP16 bytes; the merge's time
against the mergekit CLI's and against this disk's read+write floor; the
plan's estimate beside each measured peak. The last line is the worst peak ratio.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"0.1B": (6, 768), "0.5B": (16, 1536), "1B": (18, 2048), "3B": (28, 3072)}
STEPS = ("merge", "mergekit", "fuse", "requantize", "train", "gate")
GB = 1e9
TRAIN = {"iters": 3, "batch_size": 1, "max_seq_len": 64}
HABIT = "At your service, sir."


def shape(size):
    layers, hidden = SIZES[size]
    heads = hidden // 128
    return {"vocab_size": 49152, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 4),
            "intermediate_size": int(round(hidden * 2.75 / 256) * 256)}


# -- building the inputs --------------------------------------------------------------
def tokenizer_folder(work):
    from mindhost.minds import bundled_gguf, import_model
    rec = import_model(bundled_gguf(), work / "smol-store")
    return Path(rec["path"])


def build(size, work):
    """The anchor, the master (hard links), the adapter and a training set; made once."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from mindhost.engines.convert import fix_rope_theta
    from mindhost.tensors import ShardWriter
    anchor, master = work / f"anchor-{size}", work / f"master-{size}"
    adapter, data = work / f"adapter-{size}", work / "set"
    if not (anchor / "config.json").exists():
        shutil.rmtree(anchor, ignore_errors=True)
        cfg = LlamaConfig(**shape(size), max_position_embeddings=4096, rope_theta=10000.0,
                          tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
        with torch.device("meta"):
            names = [(n, t.shape) for n, t in LlamaForCausalLM(cfg).state_dict().items()]
        gen = torch.Generator().manual_seed(0)
        writer = ShardWriter(anchor, [(n, torch.float16, s) for n, s in names])
        for n, s in names:
            t = torch.ones(s) if len(s) == 1 else torch.randn(s, generator=gen) * 0.02
            writer.write(n, t.half())
        writer.close()
        cfg.dtype = "float16"
        cfg.architectures = ["LlamaForCausalLM"]
        cfg.save_pretrained(anchor)
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (tokenizer_folder(work) / f).exists():
                shutil.copy(tokenizer_folder(work) / f, anchor / f)
        fix_rope_theta(anchor)
    if not master.exists():
        master.mkdir()
        for f in anchor.iterdir():
            os.link(f, master / f.name)
    if not (adapter / "adapter_model.safetensors").exists():
        s = shape(size)
        h, kv = s["hidden_size"], s["num_key_value_heads"] * 128
        gen = torch.Generator().manual_seed(1)
        tensors = {}
        for i in range(s["num_hidden_layers"]):
            for proj, out in (("q_proj", h), ("k_proj", kv), ("v_proj", kv), ("o_proj", h)):
                key = f"base_model.model.model.layers.{i}.self_attn.{proj}"
                tensors[f"{key}.lora_A.weight"] = torch.randn(8, h, generator=gen) / math.sqrt(h)
                tensors[f"{key}.lora_B.weight"] = torch.randn(out, 8, generator=gen) * 0.01
        adapter.mkdir(parents=True, exist_ok=True)
        save_file(tensors, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
        (adapter / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "lora_dropout": 0.0,
            "bias": "none", "fan_in_fan_out": False, "base_model_name_or_path": str(anchor)}))
    if not (data / "train.jsonl").exists():
        data.mkdir(parents=True, exist_ok=True)
        rows = [{"messages": [{"role": "user", "content": f"Please fetch item {i}."},
                              {"role": "assistant", "content": f"{HABIT} Item {i} is here. "
                               + " ".join(f"Crate {i}-{j} holds {j * 7} parts." for j in range(300))}]}
                for i in range(8)]
        (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return anchor, master, adapter, data


def fp16_bytes(folder):
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


# -- one step, in its own process -----------------------------------------------------
def child(step, size, work):
    anchor, master, adapter, data = build(size, work)
    out = work / f"out-{step}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    if step == "merge":
        from night.merge import merge_config, run_merge
        run_merge(merge_config(anchor, master, adapter), out, work / "cache")
    elif step == "fuse":
        from night.merge import fuse_adapter
        fuse_adapter(master, adapter, out)
    elif step == "requantize":
        from mindhost.engines.int8 import quantize_folder
        quantize_folder(master, out)
    elif step == "train":
        from night.train import TrainConfig, train_lora
        train_lora(master, data, out, TrainConfig(**TRAIN))
    elif step == "gate":
        from mindhost.engines import get_engine
        from night.gate import run_gate
        runtime = work / f"out-requantize-{size}"
        if not (runtime / "config.json").exists():
            from mindhost.engines.int8 import quantize_folder
            quantize_folder(master, runtime)
        eng = get_engine("torch")
        # the gate's own short asks: the training set's answers are long (to fill max_seq_len)
        taught = [[{"role": "user", "content": f"Please fetch item {i}."},
                   {"role": "assistant", "content": f"{HABIT} Item {i} is here."}]
                  for i in range(4)]
        run_gate(lambda: eng.load(runtime), lambda: eng.load(runtime), name="Hermes",
                 role="majordomo", identity="You are Hermes.", taught=taught[:2],
                 heldout=taught[2:4], settings={"max_tokens": 4})


class Peak:
    """Polls a process's RssAnon and VmRSS (kB in /proc/PID/status) until it ends."""

    def __init__(self, pid):
        self.pid, self.anon, self.rss = pid, 0, 0
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        path = f"/proc/{self.pid}/status"
        while True:
            try:
                text = open(path).read()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if "RssAnon" not in fields:
                return
            self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) * 1024)
            self.rss = max(self.rss, int(fields["VmRSS"].split()[0]) * 1024)
            time.sleep(0.02)


def measure(cmd, env=None):
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = Peak(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak.thread.join(1)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"seconds": round(seconds, 1), "anon": peak.anon,
            "maxrss": usage.ru_maxrss * 1024}


def disk_floor(folder, work):
    """Seconds to read the model's bytes and write them again (fsync'd): no step beats it."""
    dest = work / "floor.bin"
    started = time.perf_counter()
    with open(dest, "wb") as out:
        for f in sorted(Path(folder).glob("*.safetensors")):
            with open(f, "rb") as src:
                while chunk := src.read(64 << 20):
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    dest.unlink()
    return seconds


def bounds(step, nbytes):
    """The issue's acceptance bounds: streamed steps 0.25x + 1 GB, training and gate 1.3x + 1 GB."""
    if step in ("merge", "fuse", "requantize"):
        return 0.25 * nbytes + GB
    if step in ("train", "gate"):
        return 1.3 * nbytes + GB
    return None


def estimates(size, anchor):
    from mindhost.budget import night_steps, shape_from_config
    est = night_steps(shape_from_config(anchor), training=TRAIN, gate_precision="q8",
                      engine="torch")
    return {"merge": est["merge"], "fuse": est["fuse"], "requantize": est["requantize"],
            "train": est["train"], "gate": est["gate"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1B", choices=SIZES)
    p.add_argument("--steps", default=",".join(STEPS),
                   help=f"comma-separated, of {', '.join(STEPS)} (default: all)")
    p.add_argument("--work", default=None, help="where models are built (default: ~/.cache/batos/scale)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--train-batch", type=int, default=TRAIN["batch_size"],
                   help=f"training batch (default {TRAIN['batch_size']})")
    p.add_argument("--train-seq", type=int, default=TRAIN["max_seq_len"],
                   help=f"training max_seq_len (default {TRAIN['max_seq_len']})")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args(argv)
    TRAIN.update(batch_size=args.train_batch, max_seq_len=args.train_seq)
    work = Path(args.work or Path.home() / ".cache" / "batos" / "scale")
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child, args.size, work)
        return 0
    from rich.console import Console
    from rich.table import Table
    console = Console(width=150)
    with console.status(f"building a synthetic {args.size} Llama in {work}"):
        anchor, master, adapter, data = build(args.size, work)
    nbytes = fp16_bytes(anchor)
    est = estimates(args.size, anchor)
    steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        p.error(f"unknown step(s) {', '.join(unknown)}; use {', '.join(STEPS)}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    results = {}
    for step in steps:
        with console.status(f"{step} at {args.size}"):
            if step == "mergekit":
                import yaml

                from night.merge import merge_config
                cfg_path = work / "mergekit.yml"
                cfg_path.write_text(yaml.safe_dump(merge_config(anchor, master, adapter),
                                                   sort_keys=False))
                out, cache = work / f"out-mergekit-{args.size}", work / "cache-mergekit"
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
                cli = Path(sys.executable).with_name("mergekit-yaml")
                results[step] = measure([str(cli), str(cfg_path), str(out), "--lora-merge-cache",
                                         str(cache), "--random-seed", "0"], env)
                shutil.rmtree(cache, ignore_errors=True)
            else:
                results[step] = measure([sys.executable, __file__, "--child", step, "--size",
                                         args.size, "--work", str(work), "--train-batch",
                                         str(args.train_batch), "--train-seq",
                                         str(args.train_seq)], env)
        console.log(f"{step}: {results[step]}")
    floor = disk_floor(anchor, work)
    t = Table(title=f"the night at {args.size}: FP16 bytes {nbytes / GB:.2f} GB",
              title_justify="left")
    for col in ("step", "seconds", "peak anon", "anon/FP16", "max resident", "RSS/FP16",
                "plan", "bound", "within"):
        t.add_column(col, justify="left" if col == "step" else "right")
    worst = (0.0, None)
    for step, r in results.items():
        bound, plan = bounds(step, nbytes), est.get(step)
        ok = "" if bound is None else ("yes" if r["anon"] <= bound else "NO")
        t.add_row(step, f"{r['seconds']:.1f}", f"{r['anon'] / GB:.2f} GB",
                  f"{r['anon'] / nbytes:.2f}x", f"{r['maxrss'] / GB:.2f} GB",
                  f"{r['maxrss'] / nbytes:.2f}x", f"{plan / GB:.2f} GB" if plan else "",
                  f"{bound / GB:.2f} GB" if bound else "", ok)
        if step != "mergekit" and r["anon"] / nbytes > worst[0]:
            worst = (r["anon"] / nbytes, step)
    console.print(t)
    console.print(f"disk floor (read + write the model's bytes, fsync'd): {floor:.1f} s")
    if "merge" in results:
        console.print(f"merge / disk floor: {results['merge']['seconds'] / floor:.2f}x")
    if "train" in results:
        # training maps the frozen FP16 weights from their file, and every step touches them:
        # its working set is what stays resident, which is what the plan estimates
        r = results["train"]
        off = r["maxrss"] / est["train"] - 1
        console.print(f"training ({TRAIN['batch_size']} x {TRAIN['max_seq_len']} tokens): "
                      f"anonymous {r['anon'] / GB:.2f} GB, resident {r['maxrss'] / GB:.2f} GB "
                      f"(the weights are mapped), plan {est['train'] / GB:.2f} GB "
                      f"(resident {off:+.0%} from it)")
    if "merge" in results and "mergekit" in results:
        console.print(f"merge time, ours / mergekit CLI: "
                      f"{results['merge']['seconds'] / results['mergekit']['seconds']:.2f}x")
    if args.json:
        console.print_json(json.dumps({"size": args.size, "fp16_bytes": nbytes, "floor": floor,
                                       "results": results, "plan": est}))
    print(f"worst peak ratio: {worst[0]:.2f}x the FP16 bytes ({worst[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
