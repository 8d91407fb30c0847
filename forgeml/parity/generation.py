"""Generation parity: greedy decoding through a KV-cache decoder gives the source framework's tokens.

Tensor parity on fixed inputs checks one forward; a decoder is used as a loop (prefill, then one
token at a time feeding ``present`` back as ``past``), and a wrong cache layout, position offset or
mask only shows there. Each prompt is decoded on its own (batch 1, no padding) by the candidate and
by the source's own ``generate(do_sample=False)``; the row reports token agreement, where the first
token differs (prompt, step, absolute position, both tokens and the reference's top-1 lead there),
and the per-step logits up to that step, judged by the stage's profile. Logits after a divergence
belong to different prefixes and are not compared.

fp32 stages must give the same tokens; lower precisions are judged on their logits and their token
agreement is reported (a quantized model may take another branch at a near-tie and still be sound).

An encoder-decoder (``Seq2SeqSpec``) decodes the same way from each prompt's encoder inputs: the
encoder once, then the decoder-with-past from the decoder start token, one token a step
(``seq2seq_decode``). A runner of the two files (``RunsParts``) runs each file once per call; a runner
of the one IR graph that holds both also recomputes the encoder each step (its outputs unused there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from forgeml.ir import DecoderSpec, Seq2SeqPrompt, Seq2SeqSpec
from forgeml.parity.measure import ParityRow
from forgeml.parity.metrics import OutputAccumulator
from forgeml.parity.tolerances import Tolerance
from forgeml.runtime import Runner

DEFAULT_TOKENS = 32
DEFAULT_PROMPTS = 4

Decode = Callable[[list[int], int], tuple[list[int], np.ndarray]]
"""(prompt ids — or a ``Seq2SeqPrompt`` —, new tokens) -> (generated ids, logits per step (steps, vocab) float32)."""


@runtime_checkable
class OwnsCache(Protocol):
    """A runtime that keeps a decoder's KV cache inside itself (llama.cpp): it gives the logits only,
    is judged on those, and decodes greedily by its own loop rather than through ``present``/``past``."""

    def greedy_decode(self, eos) -> Decode: ...


@runtime_checkable
class RunsParts(Protocol):
    """A runner of an encoder-decoder's two files: each takes and gives the IR's (union) names."""

    def encode(self, inputs: dict) -> dict: ...

    def decode_step(self, inputs: dict) -> dict: ...


@dataclass
class Generated:
    """Greedy continuations of each prompt and the logits that chose every token."""

    tokens: list[list[int]]
    logits: list[np.ndarray]  # per prompt: (steps, vocab)


def prompts_from(ids: np.ndarray, count: int = DEFAULT_PROMPTS, shortest: int = 4) -> tuple[tuple[int, ...], ...]:
    """``count`` prompts of different lengths cut from fixed token rows (the example's input_ids)."""
    flat = np.asarray(ids).reshape(-1).tolist()
    out = []
    for i in range(count):
        length = shortest + 5 * i
        start = (i * 11) % max(1, len(flat) - length)
        piece = flat[start:start + length]
        if piece:
            out.append(tuple(int(t) for t in piece))
    return tuple(out)


def is_eos(token: int, eos) -> bool:
    if eos is None:
        return False
    return token in eos if isinstance(eos, (list, tuple)) else token == eos


def runner_decode(runner: Runner, spec: DecoderSpec, kv_dtype: str = "float32") -> Decode:
    """Greedy decoding through any runner of the KV-cache signature (onnxruntime, torch).

    Prefill feeds the whole prompt with an empty past (length 0); each step then feeds the chosen
    token, ``attention_mask`` over past + 1 and ``position_ids`` = past length, and ``present`` as past.
    Stops after ``n`` tokens or at the end-of-sequence token, as ``generate`` does.
    """
    dtype = np.dtype(kv_dtype)

    def decode(prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
        past = {spec.past_name(i, k): np.zeros((1, spec.kv_heads, 0, spec.head_dim), dtype)
                for i in range(spec.layers) for k in ("key", "value")}
        feed, done, tokens, steps = list(prompt), 0, [], []
        for _ in range(n):
            total = done + len(feed)
            out = runner({"input_ids": np.asarray([feed], np.int64),
                          "attention_mask": np.ones((1, total), np.int64),
                          "position_ids": np.arange(done, total, dtype=np.int64)[None], **past})
            last = np.asarray(out["logits"])[0, -1].astype(np.float32)
            steps.append(last)
            token = int(last.argmax())
            tokens.append(token)
            past = {spec.past_name(i, k): out[spec.present_name(i, k)]
                    for i in range(spec.layers) for k in ("key", "value")}
            done, feed = total, [token]
            if is_eos(token, spec.eos_token_id):
                break
        return tokens, np.stack(steps) if steps else np.zeros((0, spec.vocab), np.float32)

    return decode


def seq2seq_decode(runner: Runner, spec: Seq2SeqSpec, kv_dtype: str = "float32") -> Decode:
    """Greedy decoding of an encoder-decoder: encoder outputs (``last_hidden_state``, each layer's cross
    keys/values) once, then the decoder from the start token with a self-attention past of length 0,
    feeding ``present.{i}.decoder.*`` back as past; stops after ``n`` tokens or at end-of-sequence."""
    dtype = np.dtype(kv_dtype)
    layers = range(spec.layers)
    parts = runner if isinstance(runner, RunsParts) else None

    def placeholder() -> dict:  # a decoder side of length 1 for a union call that only wants the encoder
        d = {"decoder_input_ids": np.full((1, 1), spec.decoder_start_token_id, np.int64),
             "encoder_hidden_states": np.zeros((1, 1, spec.hidden), dtype)}
        if spec.masked:
            d["encoder_attention_mask"] = np.ones((1, 1), np.int64)
        for i in layers:
            for k in ("key", "value"):
                d[spec.past_name(i, k, "decoder")] = np.zeros((1, spec.heads, 0, spec.head_dim), dtype)
                d[spec.past_name(i, k, "encoder")] = np.zeros((1, spec.heads, 1, spec.head_dim), dtype)
        return d

    def decode(prompt: Seq2SeqPrompt, n: int) -> tuple[list[int], np.ndarray]:
        enc_in = dict(prompt.encoder)
        enc = parts.encode(enc_in) if parts is not None else runner({**enc_in, **placeholder()})
        hidden = np.asarray(enc["last_hidden_state"])
        step = {"encoder_hidden_states": hidden}
        if spec.masked:
            step["encoder_attention_mask"] = np.asarray(enc_in["attention_mask"], np.int64)
        for i in layers:
            for k in ("key", "value"):
                step[spec.past_name(i, k, "encoder")] = enc[spec.present_name(i, k, "encoder")]
                step[spec.past_name(i, k, "decoder")] = np.zeros((1, spec.heads, 0, spec.head_dim), dtype)
        feed, tokens, steps = list(prompt.start), [], []
        for _ in range(n):
            step["decoder_input_ids"] = np.asarray([feed], np.int64)
            out = parts.decode_step(step) if parts is not None else runner({**enc_in, **step})
            last = np.asarray(out["logits"])[0, -1].astype(np.float32)
            steps.append(last)
            token = int(last.argmax())
            tokens.append(token)
            for i in layers:
                for k in ("key", "value"):
                    step[spec.past_name(i, k, "decoder")] = out[spec.present_name(i, k, "decoder")]
            feed = [token]
            if is_eos(token, spec.eos_token_id):
                break
        return tokens, np.stack(steps) if steps else np.zeros((0, spec.vocab), np.float32)

    return decode


def generate(decode: Decode, prompts: Sequence, n: int) -> Generated:
    tokens, logits = [], []
    for p in prompts:
        t, lg = decode(p if isinstance(p, Seq2SeqPrompt) else list(p), n)
        tokens.append(list(t))
        logits.append(np.asarray(lg, np.float32))
    return Generated(tokens, logits)


def first_divergence(ref: list[int], cand: list[int]) -> int | None:
    """Index of the first step where the two continuations differ (a shorter one differs where it ends)."""
    for i, (a, b) in enumerate(zip(ref, cand)):
        if a != b:
            return i
    return None if len(ref) == len(cand) else min(len(ref), len(cand))


def compare(reference: Generated, candidate: Generated, prompts: Sequence[Sequence[int]], tol: Tolerance,
            *, runtime: str, n: int) -> dict:
    """One parity row: token agreement, the first divergence, per-step logits up to it."""
    acc = OutputAccumulator("logits")
    matched = total = 0
    divergences = []
    for i, (p, rt, ct, rl, cl) in enumerate(zip(prompts, reference.tokens, candidate.tokens,
                                                  reference.logits, candidate.logits)):
        at = first_divergence(rt, ct)
        upto = len(rt) if at is None else at
        matched += upto
        total += len(rt)
        k = min(upto + 1, len(rl), len(cl))  # the diverging step's logits are on the same prefix too
        if k:
            acc.add(rl[:k], cl[:k], tol.rtol)
        if at is not None:
            d = {"prompt": i, "step": at, "position": len(p) + at,
                 "reference": rt[at] if at < len(rt) else None, "candidate": ct[at] if at < len(ct) else None}
            if at < len(rl):
                top2 = np.sort(rl[at])[-2:]
                d["reference_top1_lead"] = float(top2[1] - top2[0])
            divergences.append(d)
    row = acc.row(tol)
    row["output"] = f"generation ({runtime + ': ' if runtime else ''}{n} greedy tokens x {len(prompts)} prompts)"
    agree = matched / max(total, 1)
    row["exact_match"] = agree
    row["tokens_matched"] = f"{matched}/{total}"
    row["generation"] = {"runtime": runtime, "tokens": n, "prompts": len(prompts), "matched": matched,
                         "total": total, "divergences": divergences}
    problems = [row["problem"]] if row.get("problem") else []
    if divergences:
        d = divergences[0]
        where = (f"tokens differ first at prompt {d['prompt']} step {d['step']} (position {d['position']}): "
                 f"{d['reference']} vs {d['candidate']}")
        if "reference_top1_lead" in d:
            where += f", reference top-1 lead {d['reference_top1_lead']:.3g}"
        row["first_divergence"] = where
        if tol.atol is not None:  # fp32: the same tokens, or the conversion changed what the model says
            problems.append(f"{where}; {matched}/{total} tokens agree")
    row["passed"] = not problems
    if problems:
        row["problem"] = "; ".join(problems)
    else:
        row.pop("problem", None)
    return row


@dataclass
class GenerationCheck:
    """The source's greedy continuations, computed once per run; ``judge`` adds a stage's row."""

    spec: DecoderSpec | Seq2SeqSpec
    prompts: tuple
    n: int
    reference: Generated
    kv_dtype: str = "float32"

    @classmethod
    def start(cls, spec: DecoderSpec | Seq2SeqSpec, n: int, kv_dtype: str = "float32") -> GenerationCheck:
        prompts = spec.prompts
        return cls(spec, prompts, n, generate(spec.generate, prompts, n), kv_dtype)

    def row(self, decode: Decode, tol: Tolerance, runtime: str) -> ParityRow:
        """The candidate's continuations judged; a candidate that cannot decode fails its row, one line."""
        from forgeml.errors import first_line

        try:
            candidate = generate(decode, self.prompts, self.n)
        except Exception as e:  # runtimes raise many types; the row says which and why
            return ParityRow(output=f"generation ({runtime or 'greedy'})", passed=False,
                             problem=f"greedy decoding failed: {first_line(e, with_type=True)}")
        return ParityRow.from_json(compare(self.reference, candidate, self.prompts, tol, runtime=runtime, n=self.n))

    def judge(self, parity, runner: Runner, tol: Tolerance, runtime: str = ""):
        """``parity`` (a ``StageParity``) with the generation row of ``runner`` added to its rows."""
        import dataclasses

        if isinstance(self.spec, Seq2SeqSpec):
            decode = seq2seq_decode(runner, self.spec, self.kv_dtype)
        elif isinstance(runner, OwnsCache):
            decode = runner.greedy_decode(self.spec.eos_token_id)
        else:
            decode = runner_decode(runner, self.spec, self.kv_dtype)
        row = self.row(decode, tol, runtime)
        return dataclasses.replace(parity, rows=[*parity.rows, row], passed=parity.passed and bool(row.passed))
