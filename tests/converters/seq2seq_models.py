"""Tiny seeded encoder-decoders built from configs in code (no hub): T5, BART, Whisper.

Weights are redrawn with a larger spread than the default init so the logits are peaked (top-1
leads well above float32 noise) and greedy tokens depend on the input; two decoder layers, so a
wrong layer order in the cache would show; one encoder layer where transformers allows it (T5 5.23:
`generate` builds its cache from the encoder's layer count, so T5 keeps them equal).
"""

from __future__ import annotations


def _peaked(model, std: float = 0.3):
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def t5():
    import transformers as tf

    cfg = tf.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1, dropout_rate=0.0)
    return _peaked(tf.T5ForConditionalGeneration(cfg))


def bart():
    import transformers as tf

    cfg = tf.BartConfig(vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                        forced_bos_token_id=None, forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0,
                        activation_dropout=0.0)
    return _peaked(tf.BartForConditionalGeneration(cfg))


def whisper():
    import transformers as tf

    cfg = tf.WhisperConfig(vocab_size=96, num_mel_bins=8, d_model=32, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=16, max_target_positions=64, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, suppress_tokens=None,
                           begin_suppress_tokens=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    return _peaked(tf.WhisperForConditionalGeneration(cfg))


MODELS = {"t5": t5, "bart": bart, "whisper": whisper}
