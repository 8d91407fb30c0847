"""Tiny Hugging Face-style decoder checkpoints built in code: llama, mistral, qwen2, gpt2, phi3, qwen3, gemma2.

Each builder writes a local checkpoint directory (config.json, tokenizer files, model.safetensors)
with a tokenizer trained here on text from Python's own standard library, then trains the model
for a few steps on that text. Training makes the logits peaked and input-dependent: with the
default 0.02 init the top-1/top-2 gap is ~1e-5 and top-1 agreement measures tie-breaking, not the file.

Builds are deterministic and cached under ``~/.cache/forgeml/zoo`` keyed by the builder's settings,
so a test session or a bench builds each model once. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sysconfig
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Stdlib modules whose source is the training text (present in every CPython install).
_CORPUS_MODULES = ("textwrap.py", "string/__init__.py", "argparse.py", "fractions.py", "shlex.py", "difflib.py")
_GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_BUILD_VERSION = 3  # bump when a builder's output changes

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@dataclass(frozen=True)
class TinySpec:
    """The settings of one tiny checkpoint; they (and the library versions) key the cache."""

    arch: str  # llama | mistral | qwen2 | gpt2 | phi3 | qwen3 | gemma2
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    vocab: int = 512
    context: int = 128
    train_steps: int = 150
    seed: int = 0


def corpus() -> str:
    """Training text: the source of a few stdlib modules, read from this interpreter's install."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in _CORPUS_MODULES:
        p = root / name
        if p.is_file():
            parts.append(p.read_text(encoding="utf-8", errors="replace"))
    text = "\n".join(parts)
    if len(text) < 10_000:
        raise RuntimeError(f"could not read enough stdlib source under {root} to train a tokenizer")
    return text


def cache_root() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "forgeml" / "zoo"


def _key(spec: TinySpec) -> str:
    import tokenizers
    import torch
    import transformers

    blob = json.dumps([asdict(spec), _BUILD_VERSION, torch.__version__, transformers.__version__,
                       tokenizers.__version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint(spec: TinySpec) -> Path:
    """The checkpoint directory for ``spec``, built (atomically) on first use."""
    return _cached(cache_root() / f"{spec.arch}-{_key(spec)}", lambda tmp: build_checkpoint(spec, tmp))


def _cached(final: Path, build) -> Path:
    """``final`` once it holds a complete checkpoint (config.json present), built by ``build(dir)`` if not.

    Built in a temporary sibling and renamed into place, so a reader never sees half a checkpoint. A
    directory left at ``final`` without config.json (an older, interrupted build) is replaced, never returned.
    """
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        if not (tmp / "config.json").is_file():
            raise RuntimeError(f"building {final.name} wrote no config.json")
        try:
            os.replace(tmp, final)
        except OSError:  # final exists: built by another process first, or a stale incomplete directory
            if not (final / "config.json").is_file():
                stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
                os.replace(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
                os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not (final / "config.json").is_file():
        raise RuntimeError(f"{final}: the cached checkpoint has no config.json; delete the directory and retry")
    return final


# --- tokenizers ----------------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def write_sentencepiece_tokenizer(out: Path, vocab: int, text: str) -> None:
    """A SentencePiece BPE model with byte fallback (llama style), loaded back by transformers."""
    import io

    import sentencepiece as spm
    from transformers import AutoTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_lines(text)), model_writer=buf, vocab_size=vocab, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True, minloglevel=2,
        max_sentence_length=100_000,
    )
    (out / "tokenizer.model").write_bytes(buf.getvalue())
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 4096,
           "chat_template": CHAT_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.save_pretrained(str(out))


def write_bytelevel_tokenizer(out: Path, vocab: int, text: str, *, flavor: str) -> None:
    """A byte-level BPE whose pre-tokenizer is exactly gpt2's or qwen2's, saved as tokenizer.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    if flavor == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = [eos]
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        specials = [eos, "<|im_start|>", "<|im_end|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_lines(text), trainer)
    if flavor == "qwen2":
        (out / "vocab.json").write_text(json.dumps(tok.get_vocab(), ensure_ascii=False))
        merges = json.loads(tok.to_str())["model"]["merges"]
        (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
            m if isinstance(m, str) else " ".join(m) for m in merges) + "\n", encoding="utf-8")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=None,
                                   model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "GPT2Tokenizer" if flavor == "gpt2" else "Qwen2Tokenizer"
    cfg["add_bos_token"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2))


# --- models --------------------------------------------------------------------------------------

def _config(spec: TinySpec, tok):
    import transformers

    common = dict(vocab_size=spec.vocab, tie_word_embeddings=False)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if spec.arch == "gpt2":
        return transformers.GPT2Config(n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads,
                                       n_inner=spec.ffn, n_positions=spec.context, n_ctx=spec.context,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                       tie_word_embeddings=True, vocab_size=spec.vocab, **ids)
    cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
           "qwen2": transformers.Qwen2Config, "phi3": transformers.Phi3Config,
           "qwen3": transformers.Qwen3Config, "gemma2": transformers.Gemma2Config}[spec.arch]
    extra = {"sliding_window": None} if spec.arch in ("mistral", "qwen2") else {}
    if spec.arch == "phi3":  # its default pad id (32000) is outside a tiny vocabulary
        extra = {"pad_token_id": tok.eos_token_id}
    if spec.arch in ("qwen3", "gemma2"):  # tied embeddings, as their small releases have
        common["tie_word_embeddings"] = True
        extra = {"head_dim": spec.hidden // spec.heads}
    if spec.arch == "gemma2":  # sliding-window layers longer than the context: the local path is the global one
        extra.update(sliding_window=spec.context, query_pre_attn_scalar=spec.hidden // spec.heads,
                     pad_token_id=tok.eos_token_id)
    return cls(hidden_size=spec.hidden, num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
               num_key_value_heads=spec.kv_heads, intermediate_size=spec.ffn, max_position_embeddings=spec.context,
               rms_norm_eps=1e-5, **common, **ids, **extra)


def build_checkpoint(spec: TinySpec, out: Path) -> None:
    import torch
    import transformers

    text = corpus()
    if spec.arch in ("llama", "mistral", "phi3", "gemma2"):
        write_sentencepiece_tokenizer(out, spec.vocab, text)
    elif spec.arch in ("gpt2", "qwen2", "qwen3"):
        write_bytelevel_tokenizer(out, spec.vocab, text, flavor="gpt2" if spec.arch == "gpt2" else "qwen2")
    else:
        raise ValueError(f"no tiny builder for {spec.arch!r}")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(spec, tok))
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    _train(model, ids, spec)
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)


def _train(model, ids, spec: TinySpec) -> None:
    """A short next-token training run: peaked logits that depend on the input."""
    import torch

    seq, batch = 32, 16
    gen = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(spec.train_steps):
            starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=gen)
            x = torch.stack([ids[s:s + seq] for s in starts.tolist()])
            loss = model(input_ids=x, labels=x, use_cache=False).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)


def example_ids(path: Path, batch: int = 2, seq: int = 32) -> np.ndarray:
    """Fixed token sequences: ``batch`` windows of tokenized stdlib text (64 positions by default)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    text = corpus()
    ids = tok(text[:6_000], add_special_tokens=False)["input_ids"]
    stride = max(1, (len(ids) - seq) // max(batch, 1))
    rows = [ids[i * stride:i * stride + seq] for i in range(batch)]
    return np.asarray(rows, dtype=np.int64)


SPECS = {
    "tiny-llama": TinySpec("llama"),
    "tiny-mistral": TinySpec("mistral"),
    "tiny-qwen2": TinySpec("qwen2"),
    "tiny-gpt2": TinySpec("gpt2", kv_heads=4),
    "tiny-phi3": TinySpec("phi3"),
    "tiny-qwen3": TinySpec("qwen3"),
    "tiny-gemma2": TinySpec("gemma2"),
}


def build_zoo(name: str):
    """ZOO builder: the checkpoint directory (a Path the hf converter reads) and fixed input ids."""
    from models_zoo import ZooBuild

    path = checkpoint(SPECS[name])
    return ZooBuild(model=path, example_inputs={"input_ids": example_ids(path)}, output_names=["logits"])


# --- a few-hundred-MB checkpoint for the GGUF bench ---------------------------------------------------

@dataclass(frozen=True)
class BigSpec:
    """Llama-shaped, float16, random init (N(0, 0.02)): about 440 MB of safetensors (220 M parameters)."""

    hidden: int = 1024
    layers: int = 12
    heads: int = 16
    kv_heads: int = 8
    ffn: int = 2816
    vocab: int = 32000
    seed: int = 0


def big_checkpoint(spec: BigSpec = BigSpec()) -> Path:
    """Built tensor by tensor with numpy (no torch model in memory), cached like the tiny ones."""
    blob = json.dumps([asdict(spec), _BUILD_VERSION], sort_keys=True)
    return _cached(cache_root() / f"llama-big-{hashlib.sha256(blob.encode()).hexdigest()[:16]}",
                   lambda tmp: _write_big(spec, tmp))


def _write_big(spec: BigSpec, out: Path) -> None:
    from safetensors.numpy import save_file

    write_sentencepiece_tokenizer(out, 512, corpus())  # the GGUF pads the vocabulary to the embedding's rows
    head_dim = spec.hidden // spec.heads
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": spec.hidden,
           "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads, "num_key_value_heads": spec.kv_heads,
           "intermediate_size": spec.ffn, "vocab_size": spec.vocab, "max_position_embeddings": 2048,
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "head_dim": head_dim, "tie_word_embeddings": False,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "bos_token_id": 1, "eos_token_id": 2,
           "dtype": "float16"}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    rng = np.random.default_rng(spec.seed)

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    t = {"model.embed_tokens.weight": w(spec.vocab, spec.hidden), "lm_head.weight": w(spec.vocab, spec.hidden),
         "model.norm.weight": np.ones(spec.hidden, np.float16)}
    kv = spec.kv_heads * head_dim
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(spec.hidden, np.float16)
        t[p + "post_attention_layernorm.weight"] = np.ones(spec.hidden, np.float16)
        t[p + "self_attn.q_proj.weight"] = w(spec.hidden, spec.hidden)
        t[p + "self_attn.k_proj.weight"] = w(kv, spec.hidden)
        t[p + "self_attn.v_proj.weight"] = w(kv, spec.hidden)
        t[p + "self_attn.o_proj.weight"] = w(spec.hidden, spec.hidden)
        t[p + "mlp.gate_proj.weight"] = w(spec.ffn, spec.hidden)
        t[p + "mlp.up_proj.weight"] = w(spec.ffn, spec.hidden)
        t[p + "mlp.down_proj.weight"] = w(spec.hidden, spec.ffn)
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})


def build_tiny_llama():
    return build_zoo("tiny-llama")


def build_tiny_mistral():
    return build_zoo("tiny-mistral")


def build_tiny_qwen2():
    return build_zoo("tiny-qwen2")


def build_tiny_gpt2():
    return build_zoo("tiny-gpt2")


def build_tiny_phi3():
    return build_zoo("tiny-phi3")


def build_tiny_qwen3():
    return build_zoo("tiny-qwen3")


def build_tiny_gemma2():
    return build_zoo("tiny-gemma2")
