"""Check forgeml's pre-tokenizer table against llama.cpp's own tokenizer test vectors.

llama-cpp-python's sdist carries llama.cpp's vocab-only files with expected tokenizations
(``vendor/llama.cpp/models/ggml-vocab-NAME.gguf`` + ``.inp``/``.out``). For every name forgeml knows
(gpt-2, qwen2, llama-bpe), this rebuilds a Hugging Face ``tokenizer.json`` from the file's tokens and
merges with the pre-tokenizer forgeml maps to that name, checks that forgeml detects the name back,
and that the tokenizer reproduces llama.cpp's expected ids. Read as data; nothing is copied.

    pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d /tmp/sdist && tar xzf /tmp/sdist/*.tar.gz -C /tmp/sdist
    python scripts/check_gguf_pretokenizers.py /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/models
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def tokenizer_json(tokens: list[str], merges: list[str], pre_tokenizer: dict, ignore_merges: bool) -> dict:
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": pre_tokenizer, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                      "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}


def pre_for(name: str) -> dict:
    from forgeml.targets.gguf.vocab import KNOWN_PRE

    key = next(k for k, v in KNOWN_PRE.items() if v == name)
    if key[0] == "bytelevel":
        return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": key[1]}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


def main(models: Path) -> int:
    import gguf
    from tokenizers import Tokenizer

    from forgeml.formats.gguf import _value
    from forgeml.targets.gguf.vocab import read_vocab

    failures = 0
    for name in ("gpt-2", "qwen2", "llama-bpe"):
        path = models / f"ggml-vocab-{name}.gguf"
        reader = gguf.GGUFReader(str(path))
        f = reader.fields
        tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
        merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.merges"].data]
        file_pre = _value(f["tokenizer.ggml.pre"])
        # llama.cpp tokenizes llama-bpe with whole-word vocabulary hits before merges, as Llama 3's own
        # tokenizer.json says ("ignore_merges": true).
        tj = tokenizer_json(tokens, merges, pre_for(name), ignore_merges=(name == "llama-bpe"))
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "tokenizer.json").write_text(json.dumps(tj))
            detected = read_vocab(Path(d), {}, len(tokens)).pre
        tok = Tokenizer.from_str(json.dumps(tj))
        inputs = (models / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
        outputs = (models / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
        ok = 0
        bad = []
        for text, line in zip(inputs, outputs):
            want = [int(x) for x in line.split()]
            got = tok.encode(text, add_special_tokens=False).ids
            if got == want:
                ok += 1
            else:
                bad.append(text[:30])
        total = min(len(inputs), len(outputs))
        print(f"{name:10} file says pre={file_pre!r}, forgeml detects {detected!r}; "
              f"{ok}/{total} llama.cpp test strings tokenized identically" + (f"; differ: {bad[:3]}" if bad else ""))
        failures += (detected != file_pre) + (ok != total)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
